"""The `extractive` generator: no language model, answers with the retrieved sentences that best match.

Reads the numbered `Context:` section written by `engine.rag.prompts.build_messages`, splits each
context into sentences, and scores each by how many distinct question words it contains. Ties go
to the better-ranked context, then to the earlier sentence, so the answer is deterministic.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from engine.rag.base import Message
from engine.rag.prompts import last_user_text, read_contexts

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

NO_ANSWER = "The retrieved context does not contain an answer."
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and answer any are as at be by can citations does do for from has have how if in indication "
    "is it its of on or question report seen shown the there this to was what where which who with draft "
    "image".split()
)


def _words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS}


class ExtractiveGenerator:
    """Answers with up to `max_sentences` context sentences, each followed by its citation ([n])."""

    def __init__(self, max_sentences: int = 1) -> None:
        if max_sentences < 1:
            raise ValueError(f"max_sentences must be >= 1, got {max_sentences}")
        self.max_sentences = max_sentences
        self.name = "extractive"

    def generate(
        self,
        messages: list[Message],
        images: list[Image] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> str:
        """The best-matching context sentence(s) with citations, cut to `max_tokens` words (a cut sentence
        keeps its citation; the citation counts as a word)."""
        contexts = read_contexts(messages)
        if not contexts:
            logger.debug("no Context: section in the messages; nothing to extract")
            return NO_ANSWER
        question = _words(last_user_text(messages))
        candidates: list[tuple[int, int, int, str]] = []  # (-overlap, citation, position, sentence)
        for citation in sorted(contexts):
            for position, sentence in enumerate(_SENTENCE_END.split(contexts[citation])):
                if sentence.strip():
                    overlap = len(question & _words(sentence))
                    candidates.append((-overlap, citation, position, sentence.strip()))
        if not candidates:
            return NO_ANSWER
        candidates.sort()
        chosen = candidates[: self.max_sentences]
        chosen.sort(key=lambda item: (item[1], item[2]))  # read in context order
        parts, budget = [], max(max_tokens, 2)
        for _, citation, _, sentence in chosen:
            if budget < 2:  # no room for a word and its citation
                break
            words = sentence.split()[: budget - 1]
            parts.append(f"{' '.join(words)} [{citation}]")
            budget -= len(words) + 1
        return " ".join(parts)

    def stream(
        self,
        messages: list[Message],
        images: list[Image] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """Yield `generate`'s answer word by word (with the separating spaces)."""
        answer = self.generate(messages, images, max_tokens, temperature)
        for index, word in enumerate(answer.split(" ")):
            yield word if index == 0 else " " + word
