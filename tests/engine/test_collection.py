"""Collection: SQLite source of truth, idempotent adds, deletes, and indexes caught up from the change log."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from engine.collection import Collection
from engine.errors import CollectionError, RecordNotFoundError


def _vectors(records, encoder):
    vectors = encoder.encode_texts([r.text() for r in records])
    return {"text": dict(zip((r.id for r in records), vectors))}


def _open(tmp_path, backend="faiss"):
    collection = Collection.open(tmp_path, "c", create=True, backend=backend)
    collection.ensure_space("text", "minilm", 384)
    return collection


def test_add_get_roundtrip_and_idempotent(tmp_path, iu_records, minilm):
    records = iu_records[:40]
    with _open(tmp_path) as collection:
        added = collection.add(records, _vectors(records, minilm))
        assert len(added) == 40
        assert collection.add(records, _vectors(records, minilm)) == []  # same ids: nothing added
        assert collection.count() == 40
        assert collection.get(records[3].id) == records[3]
        collection.sync()
        assert collection.index("text").count() == 40
        with pytest.raises(RecordNotFoundError, match="no record 'nope'"):
            collection.get("nope")


def test_delete_follows_into_indexes(tmp_path, iu_records, minilm):
    records = iu_records[:30]
    with _open(tmp_path) as collection:
        collection.add(records, _vectors(records, minilm))
        collection.sync()
        assert collection.delete([records[0].id, records[1].id, "missing"]) == 2
        assert collection.count() == 28
        assert collection.index("text").count() == 28
        assert records[0].id not in collection.index("text").ids()
        ids, _ = collection.keyword_index().search([records[0].text()], 5)
        assert records[0].id not in set(ids[0])


@pytest.mark.parametrize("backend", ["faiss", "qdrant", "milvus"])
def test_index_catches_up_after_unsynced_writes(tmp_path, iu_records, minilm, backend):
    """Writes that reached SQLite but not the index (a crash before sync) are replayed on the next open."""
    records = iu_records[:50]
    collection = _open(tmp_path, backend)
    collection.add(records[:20], _vectors(records[:20], minilm))
    collection.sync()
    collection.add(records[20:], _vectors(records[20:], minilm))  # never synced: as if killed here
    collection.close()
    with Collection.open(tmp_path, "c") as reopened:
        index = reopened.index("text")
        assert index.count() == 50
        assert index.ids() == {r.id for r in records}
        query = minilm.encode_texts([records[42].text()])
        ids, scores = index.search(query, 1)
        assert ids[0][0] == records[42].id and scores[0][0] > 0.99


def test_replay_is_idempotent_when_watermark_lags(tmp_path, iu_records, minilm):
    """An index saved after its writes but before its watermark moved replays them without duplicates."""
    records = iu_records[:25]
    collection = _open(tmp_path)
    collection.add(records, _vectors(records, minilm))
    collection.sync()
    collection.close()
    db = sqlite3.connect(tmp_path / "collections" / "c" / "records.sqlite")
    db.execute("UPDATE meta SET value = '0' WHERE key = 'index:text'")
    db.commit()
    db.close()
    with Collection.open(tmp_path, "c") as reopened:
        assert reopened.index("text").count() == 25


def test_backend_and_space_mismatch_are_refused(tmp_path):
    _open(tmp_path).close()
    with pytest.raises(CollectionError, match="uses the 'faiss' backend"):
        Collection.open(tmp_path, "c", backend="qdrant")
    with Collection.open(tmp_path, "c") as collection, pytest.raises(CollectionError, match="dim 384"):
        collection.ensure_space("text", "other", 512)
    with pytest.raises(CollectionError, match="no collection 'zzz'"):
        Collection.open(tmp_path, "zzz")


def test_wrong_vector_shape_writes_nothing(tmp_path, iu_records):
    with _open(tmp_path) as collection:
        bad = {"text": {iu_records[0].id: np.zeros(10, dtype=np.float32)}}
        with pytest.raises(CollectionError, match="shape"):
            collection.add(iu_records[:1], bad)
        assert collection.count() == 0


def test_reader_sees_writes_of_another_process(tmp_path, iu_records, minilm):
    """A long-lived reader (the API server) picks up records another writer (a CLI ingest) added and synced."""
    writer = _open(tmp_path)
    writer.add(iu_records[:10], _vectors(iu_records[:10], minilm))
    writer.sync()
    reader = Collection.open(tmp_path, "c")
    first = sum(bool(r.text()) for r in iu_records[:10])
    assert reader.index("text").count() == 10 and reader.keyword_index().count() == first
    writer.add(iu_records[10:30], _vectors(iu_records[10:30], minilm))
    writer.sync()
    writer.delete([iu_records[0].id])
    with_text = sum(bool(r.text()) for r in iu_records[1:30])
    assert reader.index("text").count() == 29  # this test gives every record a vector, even an empty one
    assert reader.keyword_index().count() == with_text
    assert iu_records[0].id not in reader.index("text").ids()
    reader.close()
    writer.close()


def test_records_without_text_do_not_break_keyword_search(tmp_path, iu_records):
    from dataclasses import replace

    with _open(tmp_path) as collection:
        collection.add([replace(r, findings=None, impression=None, history=None) for r in iu_records[:3]])
        collection.sync()
        ids, _ = collection.keyword_index().search(["effusion"], 5)
        assert list(ids[0]) == [""] * 5


def test_damaged_faiss_files_are_rebuilt_from_sqlite(tmp_path, iu_records, minilm, caplog):
    """A truncated index file (disk full, a copy cut short) is moved aside and rebuilt from the records."""
    import json
    import logging

    records = iu_records[:30]
    with _open(tmp_path) as collection:
        collection.add(records, _vectors(records, minilm))
        collection.sync()
    folder = tmp_path / "collections" / "c" / "index" / "text"
    data_file = folder / json.loads((folder / "manifest.json").read_text())["index_file"]
    damaged = data_file.read_bytes()[:64]
    data_file.write_bytes(damaged)
    with (
        caplog.at_level(logging.WARNING, logger="engine.collection"),
        Collection.open(tmp_path, "c") as reopened,
    ):
        index = reopened.index("text")
        assert index.ids() == {r.id for r in records}
        ids, scores = index.search(minilm.encode_texts([records[7].text()]), 1)
        assert ids[0][0] == records[7].id and scores[0][0] > 0.99
        reopened.sync()
    assert "damaged" in caplog.text and "rebuilding from SQLite" in caplog.text
    aside = folder.with_name("text.corrupt")
    assert (aside / data_file.name).read_bytes() == damaged  # kept for inspection, not deleted
    with Collection.open(tmp_path, "c") as again:  # the rebuilt index was saved and loads as it is
        assert again.index("text").count() == 30


def test_deleted_index_folder_is_replayed_not_served_empty(tmp_path, iu_records, minilm):
    """The error for a damaged index says "restore it or delete the folder": after a delete, every record is
    replayed from SQLite (the watermark alone would claim the missing index is up to date)."""
    import shutil

    records = iu_records[:12]
    with _open(tmp_path) as collection:
        collection.add(records, _vectors(records, minilm))
        collection.sync()
    shutil.rmtree(tmp_path / "collections" / "c" / "index" / "text")
    with Collection.open(tmp_path, "c") as reopened:
        assert reopened.index("text").count() == 12
