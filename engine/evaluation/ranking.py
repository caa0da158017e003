"""Ranking metrics over ranked id lists and relevant-id sets (trec_eval definitions)."""

from __future__ import annotations

from collections.abc import Sequence


def average_precision(ranked: Sequence[str], relevant: set[str]) -> float:
    """AP: the mean, over all relevant items, of precision at the rank each is found (0 when not found)."""
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for position, doc_id in enumerate(ranked, start=1):
        if doc_id in relevant:
            hits += 1
            total += hits / position
    return total / len(relevant)


def precision_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """P@k: the share of the first k ranks that are relevant (missing ranks count as not relevant)."""
    return sum(doc_id in relevant for doc_id in ranked[:k]) / k


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    """R@k: the share of relevant items found in the first k ranks."""
    return sum(doc_id in relevant for doc_id in ranked[:k]) / len(relevant) if relevant else 0.0
