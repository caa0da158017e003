"""The knowledge-graph ranker: records ranked by the query concepts they affirm; records that deny them flagged.

Fused with BM25 and dense by RRF in `engine.search`; denied records are then dropped from hybrid results, so a
search for a finding does not return the reports that rule it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.collection import Collection
from engine.knowledge import ConceptConstraint, Knowledge


@dataclass
class ConceptRanking:
    """ranked: (record id, number of query concepts matched) best first; denied: record ids that rule a query
    concept out; why: record id -> matched-concept explanations."""

    constraints: list[ConceptConstraint]
    ranked: list[tuple[str, float]] = field(default_factory=list)
    denied: set[str] = field(default_factory=set)
    why: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def rank_by_concepts(
    collection: Collection,
    knowledge: Knowledge,
    text: str,
    allowed: set[str] | None,
    base_ranks: Mapping[str, int],
) -> ConceptRanking:
    """Rank the records that affirm the query's concepts.

    Args:
        collection: where the records' concept mentions are stored.
        knowledge: graph + linker (turns the query text into constraints).
        text: the query text.
        allowed: record ids the filter allows (None: all).
        base_ranks: best rank of each record in the other rankers, to order records that match equally.
    """
    constraints = knowledge.constraints(text)
    result = ConceptRanking(constraints)
    if not constraints:
        return result
    wanted = sorted(set().union(*(c.all_ids for c in constraints)))
    scores: dict[str, tuple[int, int]] = {}
    for record_id, mentions in collection.records_mentioning(wanted).items():
        if allowed is not None and record_id not in allowed:
            continue
        matched, strength, explanations = 0, 0, []
        for constraint in constraints:
            evidence = knowledge.evidence(constraint, mentions)
            if evidence.denials:
                result.denied.add(record_id)
            if evidence.matches:
                matched += 1
                strength += len(evidence.matches)
                explanations.append(_explain(knowledge, constraint, evidence.matches[0]))
        if matched and record_id not in result.denied:
            scores[record_id] = (matched, strength)
            result.why[record_id] = explanations
    unranked = len(base_ranks) + 1
    order = sorted(scores, key=lambda r: (-scores[r][0], base_ranks.get(r, unranked), -scores[r][1], r))
    result.ranked = [(record_id, float(scores[record_id][0])) for record_id in order]
    return result


def _explain(
    knowledge: Knowledge, constraint: ConceptConstraint, mention: Mapping[str, Any]
) -> dict[str, Any]:
    """One matched concept: the query words, the concept they mean, what the record says and the graph path."""
    path = constraint.narrower.get(mention["concept_id"], ())
    return {
        "query": constraint.text,
        "query_concept": {"id": constraint.concept_id, "name": constraint.name},
        "concept": {"id": mention["concept_id"], "name": mention.get("name")},
        "polarity": mention["polarity"],
        "field": mention.get("field"),
        "sentence": mention.get("sentence"),
        "path": [
            {"from": knowledge.graph.concept(a).name, "relation": rel, "to": knowledge.graph.concept(b).name}
            for a, rel, b in path
        ],
    }
