"""The concept graph: concepts, typed relations and media (record) nodes on a networkx MultiDiGraph.

Nodes are concept ids (``"DOID:1673"``, ``"RID34539"``), each with a ``concept`` attribute holding a
frozen ``Concept``, and media nodes ``("media", record_id)``. Edges carry a ``relation``:
``is_a``/``part_of`` point from the narrower concept to the broader one, source attributes
(``location``, ``symptom``, ``treatment``, ...) from the concept to the value, and ``mentions`` from a
media node to a concept, keyed by polarity (``present``, ``negated``, ``uncertain``).
"""

from __future__ import annotations

import logging
import re
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import networkx as nx

from kg.concepts import IS_A, MENTIONS, POLARITIES, VALUE, Concept, Polarity
from kg.errors import ConceptNotFoundError, InvalidArgumentError
from kg.merge import MergedConcepts
from kg.names import NameIndex
from kg.persist import FORMAT_VERSION, read_state, write_state

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "ConceptGraph", "Triple", "inverse_relation"]
_INVERSE_NAMES = {"part_of": "has_part", "belong_to": "has_member", "location": "location_of"}
Triple = tuple[str, str, str]


def inverse_relation(relation: str) -> str:
    """Name of a relation read backwards: ``part_of`` -> ``has_part``, ``symptom`` -> ``inverse_symptom``."""
    return _INVERSE_NAMES.get(relation, f"inverse_{relation}")


def _media_node(record_id: str) -> tuple[str, str]:
    return ("media", record_id)


class ConceptGraph:
    """Concepts, relations and media links, with lookups for linking, search and explanations."""

    def __init__(
        self, graph: nx.MultiDiGraph, aliases: dict[str, str], metadata: dict[str, Any] | None = None
    ) -> None:
        """Wrap a graph built by ``from_merged`` or read by ``load``; prefer those constructors."""
        self.graph = graph
        self.aliases = aliases
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._names: NameIndex | None = None

    @classmethod
    def from_merged(cls, merged: MergedConcepts, metadata: dict[str, Any] | None = None) -> ConceptGraph:
        """Build the graph from merged concepts and relations."""
        graph = nx.MultiDiGraph()
        for concept in merged.concepts.values():
            graph.add_node(concept.id, concept=concept)
        for relation in merged.relations:
            graph.add_edge(
                relation.subject, relation.object, key=relation.relation, relation=relation.relation
            )
        return cls(graph, dict(merged.aliases), metadata)

    # -- concepts -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(1 for _ in self.concepts())

    def __contains__(self, id_or_name: object) -> bool:
        return isinstance(id_or_name, str) and self._resolve(id_or_name) is not None

    def concepts(self) -> Iterator[Concept]:
        """Every concept (value nodes included), in insertion order."""
        for _, concept in self.graph.nodes(data="concept"):
            if concept is not None:
                yield concept

    @property
    def names(self) -> NameIndex:
        """Name/synonym index, built on first use."""
        if self._names is None:
            self._names = NameIndex(self.concepts())
        return self._names

    def _resolve(self, id_or_name: str) -> str | None:
        key = id_or_name.strip()
        if isinstance(self.graph.nodes.get(key, {}).get("concept"), Concept):
            return key
        upper = re.sub(r"^([A-Za-z]+)(?=[:\d])", lambda m: m.group(1).upper(), key)
        for candidate in (key, upper):
            if candidate in self.aliases:
                return self.aliases[candidate]
            if candidate in self.graph and "concept" in self.graph.nodes[candidate]:
                return candidate
        matches = self.names.exact(key)
        return matches[0] if matches else None

    def concept(self, id_or_name: str) -> Concept:
        """The concept with this id, alias id, xref (``UMLS:C...``, ``MESH:D...``) or name.

        Raises:
            ConceptNotFoundError: Nothing matches; the message suggests close names.
        """
        concept_id = self._resolve(id_or_name)
        if concept_id is None:
            close = self.names.suggestions(id_or_name)
            hint = f"; did you mean {', '.join(repr(name) for name in close)}?" if close else ""
            raise ConceptNotFoundError(f"no concept with id or name {id_or_name!r}{hint}")
        return self.graph.nodes[concept_id]["concept"]

    def find(self, text: str, limit: int = 10, include_values: bool = False) -> list[Concept]:
        """Concepts whose name or synonym equals ``text`` (normalised), then those starting with it.

        SLAKE value nodes (attribute texts) are left out unless ``include_values``.
        """
        ids = dict.fromkeys([*self.names.exact(text), *self.names.prefixed(text, limit)])
        found = [self.graph.nodes[concept_id]["concept"] for concept_id in ids]
        return [c for c in found if include_values or c.semantic_type != VALUE][:limit]

    # -- hierarchy and relations ----------------------------------------------------------------

    def _neighbours(self, concept_id: str, relation: str, upward: bool) -> list[str]:
        edges = (
            self.graph.out_edges(concept_id, data="relation")
            if upward
            else self.graph.in_edges(concept_id, data="relation")
        )
        return list(dict.fromkeys(v if upward else u for u, v, r in edges if r == relation))

    def _walk(self, id_or_name: str, upward: bool, depth: int | None) -> list[Concept]:
        if depth is not None and depth < 0:
            raise InvalidArgumentError(f"depth must be >= 0 or None, got {depth}")
        start = self.concept(id_or_name).id
        seen, order, frontier, level = {start}, [], [start], 0
        while frontier and (depth is None or level < depth):
            level += 1
            following = []
            for node in frontier:
                for neighbour in self._neighbours(node, IS_A, upward):
                    if neighbour not in seen:
                        seen.add(neighbour)
                        following.append(neighbour)
            order.extend(following)
            frontier = following
        return [self.graph.nodes[node]["concept"] for node in order]

    def parents(self, id_or_name: str) -> list[Concept]:
        """Direct ``is_a`` parents."""
        return self._walk(id_or_name, upward=True, depth=1)

    def children(self, id_or_name: str) -> list[Concept]:
        """Direct ``is_a`` children."""
        return self._walk(id_or_name, upward=False, depth=1)

    def descendants(self, id_or_name: str, depth: int | None = None) -> list[Concept]:
        """Narrower concepts (``is_a`` children, grandchildren, ...), nearest first, up to ``depth`` levels."""
        return self._walk(id_or_name, upward=False, depth=depth)

    def ancestors(self, id_or_name: str, depth: int | None = None) -> list[Concept]:
        """Broader concepts (``is_a`` parents, grandparents, ...), nearest first, up to ``depth`` levels."""
        return self._walk(id_or_name, upward=True, depth=depth)

    def related(self, id_or_name: str, inverse: bool = True) -> list[tuple[str, Concept]]:
        """Non-hierarchical relations: ``(relation, concept)`` for edges out of the concept, then
        (with ``inverse``) ``(inverse name, concept)`` for edges into it (``location_of``, ``has_member``).

        SLAKE attributes come back here: ``("symptom", Concept(name="chills, high fever, ..."))``.
        """
        concept_id = self.concept(id_or_name).id
        found: list[tuple[str, Concept]] = []
        for _, target, relation in self.graph.out_edges(concept_id, data="relation"):
            if relation not in (IS_A, MENTIONS):
                found.append((relation, self.graph.nodes[target]["concept"]))
        if inverse:
            for source, _, relation in self.graph.in_edges(concept_id, data="relation"):
                if relation not in (IS_A, MENTIONS):
                    found.append((inverse_relation(relation), self.graph.nodes[source]["concept"]))
        return found

    def path(self, from_id: str, to_id: str, max_len: int = 4) -> list[Triple]:
        """Shortest chain of relations between two concepts, for explanations.

        Edges are followed in either direction (media links and value nodes excluded); each step is
        returned as the stored fact ``(subject, relation, object)``, in order from ``from_id``.
        Returns ``[]`` when the concepts are the same or more than ``max_len`` steps apart.
        """
        start, goal = self.concept(from_id).id, self.concept(to_id).id
        previous: dict[str, tuple[str, Triple] | None] = {start: None}
        queue: deque[tuple[str, int]] = deque([(start, 0)])
        while queue and goal not in previous:
            node, distance = queue.popleft()
            if distance >= max_len:
                continue
            for neighbour, triple in self._steps(node):
                if neighbour not in previous:
                    previous[neighbour] = (node, triple)
                    queue.append((neighbour, distance + 1))
        if goal == start or goal not in previous:
            return []
        triples: list[Triple] = []
        node = goal
        while (step := previous[node]) is not None:
            node, triple = step
            triples.append(triple)
        return triples[::-1]

    def _steps(self, node: str) -> Iterator[tuple[str, Triple]]:
        for _, target, relation in self.graph.out_edges(node, data="relation"):
            if self._is_path_node(target):
                yield target, (node, relation, target)
        for source, _, relation in self.graph.in_edges(node, data="relation"):
            if self._is_path_node(source):
                yield source, (source, relation, node)

    def _is_path_node(self, node: Any) -> bool:
        concept = self.graph.nodes[node].get("concept")
        return concept is not None and concept.semantic_type != VALUE

    # -- media ----------------------------------------------------------------------------------

    def link_media(self, record_id: str, concept_id: str, polarity: Polarity = "present") -> None:
        """Record that a record (report, caption, image) mentions a concept with a polarity (idempotent)."""
        if polarity not in POLARITIES:
            raise InvalidArgumentError(f"polarity {polarity!r} is not one of {POLARITIES}")
        target = self.concept(concept_id).id
        node = _media_node(record_id)
        self.graph.add_node(node, kind="media")
        self.graph.add_edge(node, target, key=polarity, relation=MENTIONS, polarity=polarity)

    def unlink_media(self, record_id: str) -> int:
        """Forget a record's links; returns how many links were removed."""
        node = _media_node(record_id)
        if node not in self.graph:
            return 0
        removed = self.graph.out_degree(node)
        self.graph.remove_node(node)
        return removed

    def media(self, concept_id: str, polarity: Polarity | None = None) -> list[str]:
        """Record ids linked to a concept (with that polarity when given), sorted."""
        if polarity is not None and polarity not in POLARITIES:
            raise InvalidArgumentError(f"polarity {polarity!r} is not one of {POLARITIES}")
        target = self.concept(concept_id).id
        records = {
            source[1]
            for source, _, link in self.graph.in_edges(target, data="polarity")
            if link is not None and (polarity is None or link == polarity)
        }
        return sorted(records)

    def media_concepts(self, record_id: str) -> list[tuple[str, str]]:
        """(concept id, polarity) pairs linked to a record."""
        node = _media_node(record_id)
        if node not in self.graph:
            return []
        return [(target, polarity) for _, target, polarity in self.graph.out_edges(node, data="polarity")]

    # -- summary and persistence ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts: concepts by semantic type and source, relations by name, media links by polarity."""
        concepts = list(self.concepts())
        relations = Counter(r for _, _, r in self.graph.edges(data="relation") if r != MENTIONS)
        links = Counter(p for _, _, p in self.graph.edges(data="polarity") if p is not None)
        return {
            "concepts": len(concepts),
            "semantic_types": dict(Counter(c.semantic_type for c in concepts).most_common()),
            "sources": dict(Counter(s for c in concepts for s in c.sources).most_common()),
            "merged_concepts": sum(1 for c in concepts if len(c.sources) > 1),
            "relations": dict(relations.most_common()),
            "aliases": len(self.aliases),
            "media_records": sum(1 for _, kind in self.graph.nodes(data="kind") if kind == "media"),
            "media_links": dict(links),
            "metadata": dict(self.metadata),
        }

    def save(self, path: Path) -> None:
        """Write the graph atomically (a temporary file in the same folder, then a rename)."""
        state = {
            "graph": self.graph,
            "aliases": self.aliases,
            "metadata": self.metadata,
            "names": self._names,
        }
        write_state(Path(path), state)

    @classmethod
    def load(cls, path: Path) -> ConceptGraph:
        """Read a graph written by ``save`` (a pickle: only load files this program wrote).

        Raises:
            GraphFormatError: The file is not a medsearch graph or has another format version.
        """
        state = read_state(Path(path))
        graph = cls(state["graph"], state["aliases"], state["metadata"])
        graph._names = state.get("names")
        return graph
