"""Collections choose their FAISS index by size (`kind="auto"`, the default) and rebuild it when it outgrows it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.collection import Collection
from indexers import defaults

DIM = 16


@pytest.fixture
def small_threshold(monkeypatch):
    """Flat up to 100 vectors of DIM (instead of 50k x 512), so a few hundred records get IVF-Flat."""
    monkeypatch.setattr(defaults, "FLAT_MAX_FLOATS", 100 * DIM)


def _vectors(records, seed=0):
    rows = np.random.default_rng(seed).standard_normal((len(records), DIM)).astype(np.float32)
    return {"text": {r.id: row for r, row in zip(records, rows)}}, rows


def _open(home, **options):
    collection = Collection.open(home, "c", create=True, backend="faiss", backend_options=options or None)
    collection.ensure_space("text", "random", DIM)
    return collection


def test_small_collection_stays_flat_then_rebuilds_as_ivf(tmp_path, iu_records, small_threshold):
    records = iu_records[:300]
    with _open(tmp_path) as collection:
        collection.add(records[:50], _vectors(records[:50])[0])
        collection.sync()
        assert collection.index("text").kind == "flat"
        assert collection.spaces["text"]["faiss_auto"] == {"kind": "flat", "nlist": None}
    vectors, rows = _vectors(records[50:], seed=1)
    with Collection.open(tmp_path, "c") as collection:
        collection.add(records[50:], vectors)
        collection.sync()
        index = collection.index("text")
        assert index.kind == "ivfflat" and index.trained and index.count() == 300
        ids, _ = index.search(rows[:5], 1)
        assert [row[0] for row in ids] == [r.id for r in records[50:55]]
    manifest = json.loads((tmp_path / "collections" / "c" / "manifest.json").read_text())
    assert manifest["spaces"]["text"]["faiss_auto"] == {"kind": "ivfflat", "nlist": 7}
    with Collection.open(tmp_path, "c") as collection:  # same size: the saved IVF index is reused
        index = collection.index("text")
        assert index.kind == "ivfflat" and index.count() == 300
        assert collection._watermark("index:text") == collection.last_change()


def test_explicit_kind_wins_over_auto(tmp_path, iu_records, small_threshold):
    records = iu_records[:20]
    with _open(tmp_path, kind="hnsw", ef_search=40) as collection:
        collection.add(records, _vectors(records)[0])
        collection.sync()
        assert collection.index("text").kind == "hnsw"
        assert "faiss_auto" not in collection.spaces["text"]


def test_tiny_collections_default_to_exact_search(tmp_path, iu_records):
    records = iu_records[:30]
    with _open(tmp_path) as collection:
        collection.add(records, _vectors(records)[0])
        collection.sync()
        assert collection.index("text").kind == "flat"
