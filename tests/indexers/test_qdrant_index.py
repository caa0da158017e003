"""Qdrant specifics: the Filter translation, point ids, in-memory mode and the local-mode folder lock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client")

from qdrant_client import models  # noqa: E402

from indexers import Filter, OptionsError  # noqa: E402
from indexers.qdrant_index import QdrantIndex, point_id, to_qdrant_filter  # noqa: E402


def test_filter_translation() -> None:
    native = to_qdrant_filter(
        Filter.from_dict(
            {
                "modality": "CT",
                "age": 40,
                "body_part": ["chest", "head"],
                "year": [2000, 2001],
                "bmi": {"gte": 18.5},
            }
        )
    )
    modality, age, body_part, year, bmi = native.must
    assert modality == models.FieldCondition(key="modality", match=models.MatchValue(value="CT"))
    assert age == models.FieldCondition(key="age", range=models.Range(gte=40, lte=40))  # also matches 40.0
    assert body_part == models.FieldCondition(key="body_part", match=models.MatchAny(any=["chest", "head"]))
    assert [c.range for c in year.should] == [
        models.Range(gte=2000, lte=2000),
        models.Range(gte=2001, lte=2001),
    ]
    assert bmi == models.FieldCondition(key="bmi", range=models.Range(gte=18.5))
    assert to_qdrant_filter(None) is None and to_qdrant_filter(Filter()) is None


def test_point_ids_are_stable_uuids() -> None:
    assert point_id("doc-1") == point_id("doc-1") != point_id("doc-2")
    assert len(point_id("x")) == 36


def test_in_memory_mode_and_path_url_conflict(tmp_path: Path) -> None:
    index = QdrantIndex(dim=4)
    index.add(["a", "b"], np.eye(4, dtype=np.float32)[:2], [{"n": 1.0}, {"n": 2}])
    ids, _ = index.search(np.eye(4, dtype=np.float32)[:1], 2, filter=Filter.from_dict({"n": 1}))
    assert ids.tolist() == [["a", ""]]  # int 1 matches a stored 1.0
    index.close()
    with pytest.raises(OptionsError, match="both path"):
        QdrantIndex(dim=4, path=str(tmp_path), url="http://localhost:6333")


def test_two_collections_share_one_folder_sequentially(tmp_path: Path) -> None:
    first = QdrantIndex(dim=4, path=str(tmp_path), collection="text")
    first.add(["a"], np.ones((1, 4)))
    first.close()
    second = QdrantIndex(dim=8, path=str(tmp_path), collection="image")
    assert second.count() == 0
    second.close()
    assert QdrantIndex(dim=4, path=str(tmp_path), collection="text").count() == 1
