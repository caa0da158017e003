"""Dictionary concept linker: text -> mentions (span, concept, negated, uncertain, sentence).

Every name and synonym of a linkable concept is normalised (``kg.normalize``: case, accents, hyphens,
simple plurals) into a token sequence and put in a token trie; a text is tokenised the same way and
matched greedily left to right, longest match first, never across punctuation. IU X-ray's ``XXXX``
de-identification placeholders are transparent inside a match ("hiatal XXXX hernia") and never start
or end one. Short all-capital abbreviations from the sources ("COPD", "PTX", "DISH") are matched
case-sensitively so that "dish" or "cold" in plain text do not become diseases; very generic names
("disease", "syndrome", "finding") and one- or two-letter words are not linked at all.
Negation and uncertainty come from ``kg.negation``.
"""

from __future__ import annotations

import bisect
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kg.concepts import LINKABLE_SEMANTIC_TYPES, Concept
from kg.graph import ConceptGraph
from kg.negation import NegationDetector, sentence_spans
from kg.normalize import PLACEHOLDER, Token, normalize_token, phrases, tokenize

logger = logging.getLogger(__name__)

# Names too generic to mean anything on their own in a report.
STOP_FORMS = frozenset(
    phrases(
        """
        disease | disorder | syndrome | finding | condition | abnormality | lesion | change
        process | normal | size | left | right | structure | region | part | area | side | level
        image | view | study | exam | examination | film | patient | history | x | type | stage
        body | system | organ | tissue | cell | site | space | wall | surface | border | margin
        line | limb | zone | segment | portion | division | unit | group | set | form | pattern
        sign | symptom | injury | procedure | device | object | material | agent | drug | substance
        contour | middle | lymph | fluid | degenerative disease | cardiopulmonary disease
        """
    )
)
# "Enlarged heart" is also written "the heart is mildly enlarged": names starting with one of these
# adjectives are matched in that order too, skipping copulas and degree words in between.
PREDICATIVE_ADJECTIVES = frozenset(
    phrases(
        """
        enlarged | large | tortuous | elevated | calcified | hyperinflated | hyperexpanded
        collapsed | dilated | thickened | widened | blunted | fractured | ectatic | unfolded
        hypoinflated | atherosclerotic
        """
    )
)
PREDICATE_FILLERS = frozenset(
    normalize_token(word)
    for word in phrases(
        """
        is | are | was | were | be | been | appears | appeared | remains | seems | looks | again
        still | now | mildly | slightly | moderately | markedly | severely | minimally | borderline
        somewhat | size | mild | moderate
        """
    )
)
_ACRONYM_RE = re.compile(r"^[A-Z][A-Z0-9]{1,5}$")
_MATCH_BARRIER_RE = re.compile(r"[^\s\-']")  # anything but spaces, hyphens, apostrophes stops a match
_SCOPE_STOP_RE = re.compile(r"[;]")
_END = ""


@dataclass(frozen=True)
class Mention:
    """One concept found in a text.

    Attributes:
        start: Character offset of the mention in the text.
        end: Character offset just past the mention.
        text: The mention as written (``text[start:end]``).
        concept_id: Canonical concept id.
        name: The concept's preferred name.
        negated: Inside a negation scope ("no pleural effusion").
        uncertain: Inside an uncertainty scope ("may represent atelectasis").
        sentence_start: Character offset of the sentence holding the mention.
        sentence_end: Character offset just past that sentence.
        semantic_type: The concept's semantic type.
    """

    start: int
    end: int
    text: str
    concept_id: str
    name: str
    negated: bool
    uncertain: bool
    sentence_start: int
    sentence_end: int
    semantic_type: str = ""

    @property
    def polarity(self) -> str:
        """``negated``, ``uncertain`` or ``present`` (negation wins over uncertainty)."""
        return "negated" if self.negated else "uncertain" if self.uncertain else "present"


def _layout(
    text: str, tokens: Sequence[Token]
) -> tuple[list[tuple[int, int]], list[int], list[bool], list[bool]]:
    """Sentences, sentence number per token, and per token gap whether a match (barrier) or a
    negation scope (stop) may not pass from token i to i+1."""
    sentences = sentence_spans(text)
    starts = [start for start, _ in sentences]
    sentence_of = [max(bisect.bisect_right(starts, token.start) - 1, 0) for token in tokens]
    gaps = [text[a.end : b.start] for a, b in zip(tokens, tokens[1:])]
    barriers = [
        bool(_MATCH_BARRIER_RE.search(gap)) or sentence_of[i] != sentence_of[i + 1]
        for i, gap in enumerate(gaps)
    ]
    stops = [bool(_SCOPE_STOP_RE.search(gap)) for gap in gaps]
    return sentences, sentence_of, [*barriers, True], [*stops, True]


class Linker:
    """Links concept mentions in text using a graph's names and synonyms."""

    def __init__(
        self,
        graph: ConceptGraph,
        semantic_types: Iterable[str] | None = None,
        negation: NegationDetector | None = None,
        stop_forms: Iterable[str] = STOP_FORMS,
    ) -> None:
        """Compile the dictionary.

        Args:
            graph: The concept graph.
            semantic_types: Semantic types to link; defaults to ``LINKABLE_SEMANTIC_TYPES`` (no
                qualifiers, substances or SLAKE value nodes).
            negation: Negation/uncertainty detector; defaults to ``NegationDetector()``.
            stop_forms: Normalised names never linked.
        """
        started = time.perf_counter()
        self.semantic_types = (
            frozenset(semantic_types) if semantic_types is not None else LINKABLE_SEMANTIC_TYPES
        )
        self.negation = negation or NegationDetector()
        self._concepts: dict[str, Concept] = {}
        self._trie: dict = {}
        self._predicative: dict = {}  # "enlarged heart" stored as "heart enlarged"
        self._acronyms: dict[str, str] = {}
        self._compile(graph, frozenset(stop_forms))
        logger.info(
            "linker dictionary: %d concepts, %d acronyms, built in %.2fs",
            len(self._concepts),
            len(self._acronyms),
            time.perf_counter() - started,
        )

    def _compile(self, graph: ConceptGraph, stop: frozenset[str]) -> None:
        """Fill the tries from the graph's name index (best linkable concept per normalised name)."""
        for key, surfaces in graph.names.items():
            if key in stop or key.isdigit() or (len(key) < 3 and " " not in key):
                self._add_acronyms(graph, surfaces)
                continue
            linkable = [s for s in surfaces if self._linkable(graph, s.concept_id)]
            if not linkable:
                continue
            if all(_ACRONYM_RE.match(s.text) for s in linkable):
                self._add_acronyms(graph, linkable)
                continue
            words = key.split(" ")
            self._insert(self._trie, words, linkable[0].concept_id)
            if len(words) > 1 and words[0] in PREDICATIVE_ADJECTIVES:
                self._insert(self._predicative, [*words[1:], words[0]], linkable[0].concept_id)

    @staticmethod
    def _insert(trie: dict, words: Sequence[str], concept_id: str) -> None:
        node = trie
        for word in words:
            node = node.setdefault(word, {})
        node.setdefault(_END, concept_id)

    def _linkable(self, graph: ConceptGraph, concept_id: str) -> bool:
        if concept_id not in self._concepts:
            concept = graph.graph.nodes[concept_id]["concept"]
            if concept.semantic_type not in self.semantic_types:
                return False
            self._concepts[concept_id] = concept
        return True

    def _add_acronyms(self, graph: ConceptGraph, surfaces: Sequence) -> None:
        for surface in surfaces:
            if _ACRONYM_RE.match(surface.text) and self._linkable(graph, surface.concept_id):
                self._acronyms.setdefault(surface.text, surface.concept_id)

    def __len__(self) -> int:
        """Number of linkable concepts in the dictionary."""
        return len(self._concepts)

    def link(self, text: str) -> list[Mention]:
        """Find concept mentions in a text.

        Args:
            text: Any text (a report, a caption, a query).

        Returns:
            Mentions in text order, non-overlapping (longest match wins).
        """
        tokens = list(tokenize(text))
        if not tokens:
            return []
        sentences, sentence_of, barriers, stops = _layout(text, tokens)
        spans = self._match(tokens, barriers)
        triggers = self.negation.find_triggers(tokens, barriers)
        flags = self.negation.classify(tokens, [(a, b) for a, b, _ in spans], sentence_of, stops, triggers)
        mentions = []
        for (first, last, concept_id), (negated, uncertain) in zip(spans, flags):
            concept = self._concepts[concept_id]
            start, end = tokens[first].start, tokens[last - 1].end
            sentence_start, sentence_end = sentences[sentence_of[first]]
            mentions.append(
                Mention(
                    start=start,
                    end=end,
                    text=text[start:end],
                    concept_id=concept_id,
                    name=concept.name,
                    negated=negated,
                    uncertain=uncertain,
                    sentence_start=sentence_start,
                    sentence_end=sentence_end,
                    semantic_type=concept.semantic_type,
                )
            )
        return mentions

    def link_many(self, texts: Iterable[str]) -> list[list[Mention]]:
        """``link`` over several texts."""
        return [self.link(text) for text in texts]

    def _match(self, tokens: Sequence[Token], barriers: Sequence[bool]) -> list[tuple[int, int, str]]:
        """Non-overlapping matches as (first token, last token + 1, concept id): longest spans win."""
        candidates: list[tuple[int, int, str]] = []
        for index, token in enumerate(tokens):
            found = [
                self._longest(self._trie, tokens, barriers, index, frozenset()),
                self._longest(self._predicative, tokens, barriers, index, PREDICATE_FILLERS),
            ]
            if token.raw in self._acronyms:
                found.append((index, index + 1, self._acronyms[token.raw]))
            candidates.extend(match for match in found if match is not None)
        candidates.sort(key=lambda match: (match[0] - match[1], match[0]))
        taken = [False] * len(tokens)
        chosen = []
        for first, last, concept_id in candidates:
            if not any(taken[first:last]):
                taken[first:last] = [True] * (last - first)
                chosen.append((first, last, concept_id))
        return sorted(chosen)

    @staticmethod
    def _longest(
        trie: dict, tokens: Sequence[Token], barriers: Sequence[bool], index: int, fillers: frozenset[str]
    ) -> tuple[int, int, str] | None:
        """Longest dictionary entry starting at token ``index``; placeholders (and ``fillers`` after
        the first word) are skipped inside an entry, never at its ends."""
        if tokens[index].norm == PLACEHOLDER:
            return None
        node, best, position = trie, None, index
        while position < len(tokens):
            word = tokens[position].norm
            if position == index or (word != PLACEHOLDER and word not in fillers) or word in node:
                if word not in node:
                    break
                node = node[word]
                if _END in node:
                    best = (index, position + 1, node[_END])
            if barriers[position]:
                break
            position += 1
        return best
