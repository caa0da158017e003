"""Lookup of concepts by normalised name or synonym (used by ``ConceptGraph.find`` and ``concept``)."""

from __future__ import annotations

import bisect
import difflib
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from kg.concepts import FINDING_SEMANTIC_TYPES, SOURCE_PRIORITY, Concept
from kg.normalize import normalize_name, surface_variants


class Surface(NamedTuple):
    """One name of one concept as written in its source."""

    text: str
    concept_id: str
    is_preferred: bool


def _rank(concept: Concept, is_preferred: bool) -> tuple[int, ...]:
    """Sort key among concepts sharing a name: concepts known only to SLAKE's small VQA graph last,
    then preferred names, findings, concepts confirmed by more sources, better sources first."""
    source_rank = min((SOURCE_PRIORITY.index(s) for s in concept.sources if s in SOURCE_PRIORITY), default=9)
    slake_only = int(concept.sources == ("slake",))
    is_finding = 0 if concept.semantic_type in FINDING_SEMANTIC_TYPES else 1
    return (slake_only, 0 if is_preferred else 1, is_finding, -len(concept.sources), source_rank)


class NameIndex:
    """Normalised name -> concept ids, best first; sorted keys for prefix search."""

    def __init__(self, concepts: Iterable[Concept]) -> None:
        ranked: dict[str, list[tuple[tuple[int, ...], str, Surface]]] = defaultdict(list)
        for concept in concepts:
            for text, is_preferred in [(concept.name, True), *((s, False) for s in concept.synonyms)]:
                surface = Surface(text, concept.id, is_preferred)
                for key in surface_variants(text):
                    ranked[key].append((_rank(concept, is_preferred), concept.id, surface))
        self._ids: dict[str, tuple[str, ...]] = {}
        self._surfaces: dict[str, tuple[Surface, ...]] = {}
        for key, entries in ranked.items():
            entries.sort(key=lambda entry: entry[:2])
            self._ids[key] = tuple(dict.fromkeys(concept_id for _, concept_id, _ in entries))
            self._surfaces[key] = tuple(surface for _, _, surface in entries)
        self._sorted_keys = sorted(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def exact(self, text: str) -> tuple[str, ...]:
        """Concept ids whose name or synonym normalises like ``text``; those spelt exactly like it
        (ignoring case) first, then by rank."""
        surfaces = self._surfaces.get(normalize_name(text), ())
        literal = text.strip().casefold()
        ordered = sorted(surfaces, key=lambda surface: surface.text.casefold() != literal)
        return tuple(dict.fromkeys(surface.concept_id for surface in ordered))

    def prefixed(self, text: str, limit: int) -> list[str]:
        """Concept ids with a name starting with ``text`` (normalised), shortest names first."""
        key = normalize_name(text)
        if not key:
            return []
        start = bisect.bisect_left(self._sorted_keys, key)
        matches: list[str] = []
        for candidate in self._sorted_keys[start : start + 50 * limit]:
            if not candidate.startswith(key):
                break
            matches.append(candidate)
        matches.sort(key=len)
        return [concept_id for candidate in matches for concept_id in self._ids[candidate]]

    def suggestions(self, text: str, limit: int = 5) -> list[str]:
        """Names close to ``text`` (difflib ratio), for "did you mean" messages."""
        key = normalize_name(text)
        if not key:
            return []
        pool = [candidate for candidate in self._sorted_keys if candidate[:1] == key[:1]]
        return difflib.get_close_matches(key, pool, n=limit, cutoff=0.75)

    def items(self) -> Iterable[tuple[str, tuple[Surface, ...]]]:
        """(normalised key, surfaces with that key, best first) for every key."""
        return self._surfaces.items()
