"""Prompt building shared by every generator: numbered context, facts, and the grounding instructions.

Context is passed to the model inside the system message, in a fixed layout that
`read_contexts` (and so the extractive generator) can parse back::

    <instructions>

    Context:
    [1] first retrieved text, on one line
    [2] second retrieved text

    Facts:
    - a knowledge-graph fact

The citation number `n` refers to `contexts[n - 1]`; `parse_citations` maps an answer back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.rag.base import Message

Task = Literal["vqa", "report"]

CONTEXT_HEADER = "Context:"
FACTS_HEADER = "Facts:"
_CONTEXT_LINE = re.compile(r"^\[(\d+)\]\s+(.*)$")
_CITATION = re.compile(r"\[(\d+)\]")

_INSTRUCTIONS: dict[str, str] = {
    "vqa": (
        "You are a radiology assistant. Answer the question using only the numbered context below. "
        "Cite the context that supports each statement with its number in brackets, like [1] or [2]. "
        "If the context does not contain the answer, say that it cannot be answered from the retrieved "
        "context. Keep the answer short."
    ),
    "report": (
        "You are a radiology assistant drafting a report for the query image. Write the findings and "
        "an impression using only the numbered context below, which comes from similar prior cases. "
        "Cite the context that supports each statement with its number in brackets, like [1] or [2]. "
        "Do not state anything the context does not support."
    ),
}


@dataclass(frozen=True)
class Context:
    """One retrieved passage: record id, its text, retrieval score and, when it has one, its image."""

    id: str
    text: str
    score: float
    image_path: str | None = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_messages(
    question: str,
    contexts: Sequence[Context],
    facts: Sequence[str] = (),
    task: Task = "vqa",
) -> list[Message]:
    """Chat messages asking for an answer grounded in `contexts` (cited as [1], [2], ...) and `facts`.

    For `task="report"`, `question` is the clinical indication (may be empty).
    Images are not embedded here: pass them to `Generator.generate(images=...)`.
    """
    if task not in _INSTRUCTIONS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(_INSTRUCTIONS)}")
    lines = [_INSTRUCTIONS[task], "", CONTEXT_HEADER]
    if contexts:
        lines += [f"[{number}] {_one_line(context.text)}" for number, context in enumerate(contexts, start=1)]
    else:
        lines.append("(no context was retrieved)")
    if facts:
        lines += ["", FACTS_HEADER] + [f"- {_one_line(fact)}" for fact in facts]
    if task == "vqa":
        user = f"Question: {question.strip()}\nAnswer with citations."
    else:
        indication = question.strip() or "not given"
        user = f"Indication: {indication}\nDraft the report with citations."
    return [{"role": "system", "content": "\n".join(lines)}, {"role": "user", "content": user}]


def message_text(content: Any) -> str:
    """The text of a message's content, whether a string or a list of OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def read_contexts(messages: Sequence[Message]) -> dict[int, str]:
    """Citation number -> context text, parsed from the `Context:` section of the system messages."""
    found: dict[int, str] = {}
    for message in messages:
        if message.get("role") != "system":
            continue
        inside = False
        for line in message_text(message.get("content")).splitlines():
            stripped = line.strip()
            if stripped == CONTEXT_HEADER:
                inside = True
                continue
            if not inside:
                continue
            if not stripped:
                break
            match = _CONTEXT_LINE.match(stripped)
            if match:
                found[int(match.group(1))] = match.group(2)
    return found


def last_user_text(messages: Sequence[Message]) -> str:
    """Text of the last user message ("" when there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def parse_citations(answer: str, count: int | None = None) -> list[int]:
    """Citation numbers used in `answer`, in first-use order, without repeats; out-of-range ones dropped."""
    numbers: list[int] = []
    for match in _CITATION.finditer(answer):
        number = int(match.group(1))
        if number >= 1 and (count is None or number <= count) and number not in numbers:
            numbers.append(number)
    return numbers
