"""Rank fusion: reciprocal rank fusion (Cormack et al., SIGIR 2009) of several ranked id lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]],
    weights: Mapping[str, float] | None = None,
    k: int = RRF_K,
    ranks: Mapping[str, Sequence[int]] | None = None,
) -> list[tuple[str, float, dict[str, int]]]:
    """Fuse ranked lists: score(d) = sum_r w_r / (k + rank_r(d)), ranks starting at 1.

    Args:
        rankings: ranker name -> ids, best first (empty ids are ignored).
        weights: ranker name -> weight (default 1.0 each).
        k: the RRF constant; 60 as in the paper.
        ranks: ranker name -> the rank of each of its ids, increasing, for a ranking that leaves records out
            (default: 1, 2, ... over its non-empty ids).

    Returns:
        (id, fused score, {ranker: rank}) sorted by score, best first; ties broken by id for determinism.
    """
    weights = weights or {}
    scores: dict[str, float] = {}
    given = ranks or {}
    found: dict[str, dict[str, int]] = {}
    for name, ids in rankings.items():
        weight = weights.get(name, 1.0)
        numbered = zip(given[name], ids) if given.get(name) else enumerate((i for i in ids if i), start=1)
        for rank, doc_id in numbered:
            if not doc_id or name in found.setdefault(doc_id, {}):
                continue  # a ranker lists each id once; keep its best rank
            scores[doc_id] = scores.get(doc_id, 0.0) + weight / (k + rank)
            found[doc_id][name] = rank
    ordered = sorted(scores, key=lambda d: (-scores[d], d))
    return [(doc_id, scores[doc_id], found[doc_id]) for doc_id in ordered]
