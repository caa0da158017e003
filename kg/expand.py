"""Query expansion and polarity logic for concept search (engine calls these; kg stays engine-free).

- ``query_concepts``: the concepts a query asks for, with the polarity it asks for ("no effusion"
  asks for the negated form).
- ``expand_concept``: a concept plus its narrower concepts (``is_a`` descendants) with the path
  from the query concept to each, for "why this hit" explanations.
- ``denies``: whether a negated mention rules a concept out. Negation flows down the hierarchy:
  "no effusion" also denies "pleural effusion", but "no pleural effusion" says nothing of effusions
  elsewhere; presence flows up ("pleural effusion" is an effusion).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from kg.concepts import IS_A
from kg.graph import ConceptGraph, Triple
from kg.linker import Linker


@dataclass(frozen=True)
class Expansion:
    """A concept reached from a query concept.

    Attributes:
        concept_id: The concept reached.
        name: Its preferred name.
        distance: ``is_a`` steps below the query concept (0 for the query concept itself).
        path: Facts ``(narrower, "is_a", broader)`` linking it to the query concept, nearest first.
    """

    concept_id: str
    name: str
    distance: int
    path: tuple[Triple, ...] = ()


@dataclass(frozen=True)
class QueryConcept:
    """A concept mentioned in a query and the polarity the query asks for."""

    concept_id: str
    name: str
    text: str
    polarity: str


def query_concepts(linker: Linker, query: str) -> list[QueryConcept]:
    """Concepts of a query text: "enlarged heart" -> cardiomegaly (present); "no effusion" -> effusion
    (negated)."""
    return [QueryConcept(m.concept_id, m.name, m.text, m.polarity) for m in linker.link(query)]


def expand_concept(
    graph: ConceptGraph, concept_id: str, max_depth: int = 3, limit: int = 200
) -> list[Expansion]:
    """The concept and its narrower concepts, breadth first, at most ``limit`` of them.

    Args:
        graph: The concept graph.
        concept_id: Id or name of the query concept.
        max_depth: Deepest ``is_a`` level below the concept to include.
        limit: Most expansions returned (the concept itself included).
    """
    root = graph.concept(concept_id)
    found = [Expansion(root.id, root.name, 0)]
    paths: dict[str, tuple[Triple, ...]] = {root.id: ()}
    queue: deque[tuple[str, int]] = deque([(root.id, 0)])
    while queue and len(found) < limit:
        node, depth = queue.popleft()
        if depth >= max_depth:
            continue
        for child in graph.children(node):
            if child.id in paths:
                continue
            paths[child.id] = ((child.id, IS_A, node), *paths[node])
            found.append(Expansion(child.id, child.name, depth + 1, paths[child.id]))
            queue.append((child.id, depth + 1))
            if len(found) >= limit:
                break
    return found


def covers(graph: ConceptGraph, broader_id: str, narrower_id: str) -> bool:
    """True when ``narrower_id`` is ``broader_id`` or one of its ``is_a`` descendants."""
    broader, narrower = graph.concept(broader_id).id, graph.concept(narrower_id).id
    return broader == narrower or any(c.id == broader for c in graph.ancestors(narrower))


def denies(graph: ConceptGraph, negated_id: str, concept_id: str) -> bool:
    """Whether a negated mention of ``negated_id`` rules out ``concept_id`` (same or narrower concept)."""
    return covers(graph, negated_id, concept_id)
