"""reciprocal_rank_fusion: scores, tie-break by id, and rankings that leave records out (explicit ranks)."""

from __future__ import annotations

import pytest

from engine.fusion import RRF_K, reciprocal_rank_fusion


def test_scores_and_ranks():
    fused = reciprocal_rank_fusion({"a": ["x", "y", ""], "b": ["y", "z"]})
    assert [doc for doc, _, _ in fused] == ["y", "x", "z"]
    scores = {doc: score for doc, score, _ in fused}
    assert scores["y"] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))
    assert dict((doc, ranks) for doc, _, ranks in fused)["y"] == {"a": 2, "b": 1}


def test_explicit_ranks_equal_the_whole_ranking_for_the_records_kept():
    whole = {"keyword": ["d3", "d1"], "concepts": ["d1", "d2", "d4", "d5", "d3"]}
    full = {doc: (score, ranks) for doc, score, ranks in reciprocal_rank_fusion(whole)}
    # the concept ranking without d4 and d5, which only it found: d3 keeps its rank 5
    fused = reciprocal_rank_fusion(
        {"keyword": ["d3", "d1"], "concepts": ["d1", "d2", "d3"]}, ranks={"concepts": [1, 2, 5]}
    )
    assert [doc for doc, _, _ in fused] == ["d1", "d3", "d2"]
    for doc, score, ranks in fused:
        assert (score, ranks) == full[doc]


def test_no_explicit_ranks_numbers_the_ids():
    assert reciprocal_rank_fusion({"a": ["x", "y"]}, ranks={"a": []}) == reciprocal_rank_fusion(
        {"a": ["x", "y"]}
    )
