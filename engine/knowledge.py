"""Engine side of the knowledge graph: link records at ingest, turn queries into concept constraints.

A query concept ("enlarged heart" -> cardiomegaly, present) is expanded to itself and its narrower concepts;
a record *matches* it with a present (or uncertain) mention of any of them, and *denies* it with a negated
mention of the concept, of a narrower one, or of a broader one ("no effusion" denies pleural effusion) and no
positive mention. A negated query ("no effusion") asks for the records that deny it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.datasets.record import Record
from kg import ConceptGraph, GraphSources, Linker, expand_concept, load_or_build, query_concepts

logger = logging.getLogger(__name__)

# record fields whose concepts count as what the record says (history/indication is why it was imaged)
EVIDENCE_FIELDS = ("findings", "impression", "diagnosis", "caption")
LINKED_FIELDS = (*EVIDENCE_FIELDS, "history")


@dataclass(frozen=True)
class ConceptConstraint:
    """One concept of a query: what it matches (narrower ids with their graph paths) and what denies it."""

    text: str
    concept_id: str
    name: str
    polarity: str  # "present" or "negated": what the query asks for
    narrower: Mapping[str, tuple[tuple[str, str, str], ...]]  # concept id -> path to the query concept
    broader: frozenset[str] = field(default_factory=frozenset)

    @property
    def all_ids(self) -> set[str]:
        return set(self.narrower) | set(self.broader)


@dataclass
class RecordEvidence:
    """What one record says about one constraint: the mentions that match and those that deny it."""

    matches: list[dict[str, Any]] = field(default_factory=list)
    denials: list[dict[str, Any]] = field(default_factory=list)


class Knowledge:
    """The concept graph and its linker, loaded once per process."""

    def __init__(self, graph: ConceptGraph, linker: Linker) -> None:
        self.graph = graph
        self.linker = linker

    @classmethod
    def load(cls, cache_dir: Path, data_dir: Path | None) -> Knowledge:
        """Build the graph from the ontologies under `data_dir` (cached in `cache_dir`) and compile its linker."""
        started = time.perf_counter()
        sources = GraphSources.from_data_dir(Path(data_dir)) if data_dir else GraphSources()
        graph = load_or_build(Path(cache_dir), sources)
        linker = Linker(graph)
        logger.info(
            "knowledge graph ready (%s, %d concepts) in %.1fs",
            graph.metadata.get("cache", "built"),
            len(graph),
            time.perf_counter() - started,
        )
        return cls(graph, linker)

    # ------------------------------------------------------------------ ingest
    def link_records(self, records: Sequence[Record]) -> dict[str, list[dict[str, Any]]]:
        """record id -> concept rows {concept_id, name, polarity, field, start, end, sentence} for its text fields."""
        out: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            rows: list[dict[str, Any]] = []
            for name in LINKED_FIELDS:
                text = getattr(record, name) or ""
                offset = 0
                for line in text.splitlines(keepends=True):  # lines are separate statements (joined captions)
                    for mention in self.linker.link(line) if line.strip() else ():
                        rows.append(
                            {
                                "concept_id": mention.concept_id,
                                "name": mention.name,
                                "polarity": mention.polarity,
                                "field": name,
                                "start": offset + mention.start,
                                "end": offset + mention.end,
                                "sentence": line[mention.sentence_start : mention.sentence_end].strip(),
                            }
                        )
                    offset += len(line)
            out[record.id] = rows
        return out

    # ------------------------------------------------------------------ search
    def constraints(self, query: str, max_depth: int = 3) -> list[ConceptConstraint]:
        """The concepts a query asks for (uncertain query mentions count as present), expanded."""
        out: list[ConceptConstraint] = []
        seen: set[str] = set()
        for concept in query_concepts(self.linker, query):
            if concept.concept_id in seen:
                continue
            seen.add(concept.concept_id)
            narrower = {
                e.concept_id: e.path for e in expand_concept(self.graph, concept.concept_id, max_depth)
            }
            broader = frozenset(c.id for c in self.graph.ancestors(concept.concept_id, depth=max_depth))
            polarity = "negated" if concept.polarity == "negated" else "present"
            out.append(
                ConceptConstraint(concept.text, concept.concept_id, concept.name, polarity, narrower, broader)
            )
        return out

    @staticmethod
    def evidence(constraint: ConceptConstraint, mentions: Sequence[Mapping[str, Any]]) -> RecordEvidence:
        """Sort a record's mentions (evidence fields only) into matches and denials of `constraint`."""
        said = [m for m in mentions if m.get("field") in EVIDENCE_FIELDS]
        positive = [
            dict(m)
            for m in said
            if m["polarity"] in ("present", "uncertain") and m["concept_id"] in constraint.narrower
        ]
        negative = [
            dict(m) for m in said if m["polarity"] == "negated" and m["concept_id"] in constraint.all_ids
        ]
        if constraint.polarity == "negated":  # "no effusion" asks for the records that deny it
            return RecordEvidence(matches=[] if positive else negative, denials=positive)
        return RecordEvidence(matches=positive, denials=[] if positive else negative)


def concept_card(
    knowledge: Knowledge,
    id_or_name: str,
    linked: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    limit: int = 20,
) -> dict[str, Any]:
    """Everything about one concept: names, ids, hierarchy, relations and (given `linked`, from
    `Collection.records_mentioning`) the records that mention it, by polarity."""
    graph = knowledge.graph
    concept = graph.concept(id_or_name)

    def brief(items: Sequence[Any]) -> list[dict[str, str]]:
        return [{"id": c.id, "name": c.name} for c in items[:limit]]

    records: dict[str, list[str]] = {"present": [], "negated": [], "uncertain": []}
    for record_id, mentions in (linked or {}).items():
        for polarity in dict.fromkeys(m["polarity"] for m in mentions if m["concept_id"] == concept.id):
            records.setdefault(polarity, []).append(record_id)
    return {
        "id": concept.id,
        "name": concept.name,
        "semantic_type": concept.semantic_type,
        "synonyms": list(concept.synonyms),
        "xrefs": list(concept.xrefs),
        "sources": list(concept.sources),
        "definition": concept.definition,
        "parents": brief(graph.parents(concept.id)),
        "children": brief(graph.children(concept.id)),
        "related": [
            {"relation": rel, "id": c.id, "name": c.name} for rel, c in graph.related(concept.id)[:limit]
        ],
        "records": {
            polarity: {"count": len(ids), "ids": sorted(ids)[:limit]} for polarity, ids in records.items()
        },
    }


def mentions_as_dicts(mentions: Sequence[Any]) -> list[dict[str, Any]]:
    """Linker mentions as JSON-ready dicts (span, concept, flags)."""
    return [
        {
            "start": m.start,
            "end": m.end,
            "text": m.text,
            "concept_id": m.concept_id,
            "name": m.name,
            "semantic_type": m.semantic_type,
            "negated": m.negated,
            "uncertain": m.uncertain,
        }
        for m in mentions
    ]
