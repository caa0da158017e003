"""Milvus specifics: the expression translation and its quoting (no injection through values)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")

from indexers import Filter, OptionsError  # noqa: E402
from indexers.milvus_index import MilvusIndex, to_milvus_expression  # noqa: E402


def test_expression_translation() -> None:
    expression = to_milvus_expression(
        Filter.from_dict({"modality": "CT", "flag": True, "age": {"gte": 30, "lt": 60}, "labels": ["a", "b"]})
    )
    assert expression == (
        '(modality == "CT" or json_contains(modality, "CT")) and flag == true and (age >= 30 and age < 60)'
        ' and ((labels == "a" or json_contains(labels, "a")) or (labels == "b" or json_contains(labels, "b"))'
        ' or json_contains_any(labels, ["a", "b"]))'
    )
    assert to_milvus_expression(Filter.from_dict({"year": [2000, 2001]})) == "(year == 2000 or year == 2001)"
    assert to_milvus_expression(None) == "" and to_milvus_expression(Filter()) == ""


def test_string_values_are_escaped(tmp_path: Path) -> None:
    tricky = 'he said "hi" \\ then\nleft'
    assert to_milvus_expression(Filter.from_dict({"note": tricky})).startswith(
        '(note == "he said \\"hi\\" \\\\ then\\nleft"'
    )
    index = MilvusIndex(dim=4, uri=str(tmp_path / "m.db"))
    try:
        index.add(["a", "b"], np.eye(4)[:2], [{"note": tricky}, {"note": "CT"}])
        query = np.eye(4, dtype=np.float32)[:1]
        assert index.search(query, 2, Filter.from_dict({"note": tricky}))[0].tolist() == [["a", ""]]
        injection = Filter.from_dict({"note": 'CT" or note != "'})
        assert index.search(query, 2, injection)[0].tolist() == [["", ""]]
    finally:
        index.close()


def test_uri_is_required() -> None:
    with pytest.raises(OptionsError, match="milvus needs uri="):
        MilvusIndex(dim=4)
