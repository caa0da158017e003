"""Linking quality against IU X-ray's manual MeSH indexing (the ``Problems`` column).

Mapping from ``Problems`` terms to concept ids (``map_problem_terms``), in this order:

1. ``PROBLEM_TERM_NAMES``: a short, fixed table for MeSH headings whose radiology concept has another
   name in the offline graph ("Cicatrix" -> scar, "Fractures, Bone" -> fracture, "Density" -> opacity).
2. The term itself, then its natural-order form ("Hernia, Hiatal" -> "Hiatal Hernia"), looked up
   among concept names and synonyms (normalised). With a UMLS release loaded, MeSH names are synonyms
   of their concepts, so this step alone maps the headings.

Only terms mapping to a finding-type concept (disease, finding, imaging observation) are scored:
anatomy headings ("Lung", "Aorta", which IU pairs with a qualifier such as ``/hypoinflation``),
devices, "normal", "No Indexing" and unmapped terms are left out and listed in the result.

Scoring, micro-averaged over reports: gold = mapped Problems concepts of a report; predicted =
concepts of *positive* mentions (neither negated nor uncertain) that equal a gold-vocabulary concept or
have one among their ``is_a`` ancestors (a "calcified granuloma" mention counts for "Granuloma").
A prediction is a true positive when it equals or descends from a gold concept of the same report.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kg.concepts import FINDING_SEMANTIC_TYPES
from kg.errors import ConceptNotFoundError
from kg.graph import ConceptGraph
from kg.linker import Linker
from kg.normalize import invert_comma_name

logger = logging.getLogger(__name__)

PROBLEM_TERM_NAMES: dict[str, str] = {
    "Cicatrix": "scar",
    "Fractures, Bone": "fracture",
    "Density": "opacity",
}
IGNORED_TERMS = frozenset({"normal", "No Indexing", "Technical Quality of Image Unsatisfactory"})


def map_problem_terms(graph: ConceptGraph, terms: Iterable[str]) -> dict[str, str | None]:
    """Concept id for each ``Problems`` term (None when unmapped or not a finding-type concept)."""
    mapping: dict[str, str | None] = {}
    for term in sorted(set(terms) - IGNORED_TERMS):
        mapping[term] = None
        for candidate in (PROBLEM_TERM_NAMES.get(term), term, invert_comma_name(term)):
            if not candidate:
                continue
            try:
                concept = graph.concept(candidate)
            except ConceptNotFoundError:
                continue
            if concept.semantic_type in FINDING_SEMANTIC_TYPES:
                mapping[term] = concept.id
            break
    return mapping


def read_iu_reports(csv_path: Path, uids: set[str] | None = None) -> list[tuple[str, list[str]]]:
    """(findings + impression, Problems terms) per study of IU X-ray's ``indiana_reports.csv``.

    Args:
        csv_path: The reports CSV (``uid,MeSH,Problems,image,indication,comparison,findings,impression``).
        uids: Keep only these study uids (e.g. one R2Gen split); None keeps all.
    """
    pairs: list[tuple[str, list[str]]] = []
    with Path(csv_path).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if uids is not None and row["uid"] not in uids:
                continue
            text = " ".join(part for part in (row["findings"], row["impression"]) if part)
            terms = list(dict.fromkeys(term.strip() for term in row["Problems"].split(";") if term.strip()))
            pairs.append((text, terms))
    return pairs


def _ancestor_map(graph: ConceptGraph, targets: set[str], concept_ids: Iterable[str]) -> dict[str, set[str]]:
    """For each concept, the gold-vocabulary concepts it equals or descends from."""
    result: dict[str, set[str]] = {}
    for concept_id in set(concept_ids):
        lineage = {concept_id} | {c.id for c in graph.ancestors(concept_id)}
        result[concept_id] = lineage & targets
    return result


def linking_scores(
    graph: ConceptGraph, linker: Linker, reports: Sequence[tuple[str, Sequence[str]]]
) -> dict[str, Any]:
    """Precision, recall and F1 of positive finding mentions against ``Problems`` terms.

    Args:
        graph: The concept graph.
        linker: A linker over that graph.
        reports: ``(report text, Problems terms)`` pairs.

    Returns:
        ``precision``, ``recall``, ``f1``, ``tp``, ``fp``, ``fn``, ``reports``, ``mapping`` (term -> id or
        None), ``mapped_terms``/``unmapped_terms``, and ``per_term`` counts (support, tp, fn).
    """
    mapping = map_problem_terms(graph, (term for _, terms in reports for term in terms))
    targets = {concept_id for concept_id in mapping.values() if concept_id}
    linked = [linker.link(text) for text, _ in reports]
    lineage = _ancestor_map(graph, targets, {m.concept_id for mentions in linked for m in mentions})
    tp = fp = fn = 0
    per_term: dict[str, Counter] = {term: Counter() for term, concept_id in mapping.items() if concept_id}
    for (_, terms), mentions in zip(reports, linked):
        gold = {mapping[t]: t for t in terms if mapping.get(t)}
        positive = {
            m.concept_id for m in mentions if not m.negated and not m.uncertain and lineage[m.concept_id]
        }
        hits = sum(1 for concept_id in positive if lineage[concept_id] & gold.keys())
        tp, fp = tp + hits, fp + len(positive) - hits
        covered = {g for concept_id in positive for g in lineage[concept_id]}
        for concept_id, term in gold.items():
            per_term[term]["support"] += 1
            per_term[term]["tp" if concept_id in covered else "fn"] += 1
            fn += concept_id not in covered
    found = sum(counts["tp"] for counts in per_term.values())
    return _summary(tp, fp, fn, found, len(reports), mapping, per_term)


def _summary(
    tp: int,
    fp: int,
    fn: int,
    found: int,
    reports: int,
    mapping: dict[str, str | None],
    per_term: dict[str, Counter],
) -> dict[str, Any]:
    """The result dict; ``tp``/``fp`` count predicted concepts, recall counts gold concepts covered."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = found / (found + fn) if found + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "reports": reports,
        "mapping": mapping,
        "mapped_terms": sorted(t for t, c in mapping.items() if c),
        "unmapped_terms": sorted(t for t, c in mapping.items() if not c),
        "per_term": {term: dict(counts) for term, counts in sorted(per_term.items())},
    }
