"""RecordStore: the SQLite (WAL) source of truth of a collection: records, vectors, concept mentions, change log.

Every write is one transaction that also appends the touched record ids to ``changes``; the indexes built from
the store (see `engine.collection`) replay that log. Nothing here knows about vector indexes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from engine.datasets.record import QA, Record
from engine.errors import RecordNotFoundError

PAYLOAD_FIELDS = ("source", "kind", "modality", "body_part", "plane", "split")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, source TEXT NOT NULL, image_path TEXT, text TEXT NOT NULL,
    modality TEXT, body_part TEXT, plane TEXT, split TEXT, labels TEXT NOT NULL, data TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_source ON records(source);
CREATE TABLE IF NOT EXISTS vectors (
    record_id TEXT NOT NULL, space TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (record_id, space)
);
CREATE TABLE IF NOT EXISTS concepts (
    record_id TEXT NOT NULL, concept_id TEXT NOT NULL, name TEXT, polarity TEXT NOT NULL, field TEXT,
    start INTEGER, end INTEGER, sentence TEXT
);
CREATE INDEX IF NOT EXISTS concepts_record ON concepts(record_id);
CREATE INDEX IF NOT EXISTS concepts_concept ON concepts(concept_id, polarity);
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


_INSERT_CONCEPT = (
    "INSERT INTO concepts (record_id, concept_id, name, polarity, field, start, end, sentence) "
    "VALUES (?,?,?,?,?,?,?,?)"
)


def _concept_rows(concepts: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[tuple[Any, ...]]:
    """record id -> mentions, as rows of `_INSERT_CONCEPT`."""
    return [
        (
            rid,
            c["concept_id"],
            c.get("name"),
            c["polarity"],
            c.get("field"),
            c.get("start"),
            c.get("end"),
            c.get("sentence"),
        )
        for rid, found in concepts.items()
        for c in found
    ]


def record_to_json(record: Record) -> str:
    return json.dumps(asdict(record), ensure_ascii=False, sort_keys=True)


def record_from_json(data: str) -> Record:
    fields = json.loads(data)
    fields["qa"] = tuple(QA(**qa) for qa in fields.get("qa", ()))
    fields["labels"] = tuple(fields.get("labels", ()))
    return Record(**fields)


def payload_of(record: Record) -> dict[str, Any]:
    """The metadata every vector index stores beside a vector (what filters can use)."""
    payload: dict[str, Any] = {
        name: getattr(record, name) for name in PAYLOAD_FIELDS if getattr(record, name)
    }
    if record.labels:
        payload["labels"] = list(record.labels)
    return payload


class RecordStore:
    """Records, their vectors per space and their concept mentions in one SQLite file (`label` names it in errors)."""

    def __init__(self, db_path: Path, label: str) -> None:
        self.label = label
        self._db = sqlite3.connect(db_path, timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a collection written by an older medsearch to the current schema (additive changes only)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(concepts)")}
        if "name" not in columns:  # before 0.1: concepts had no name column
            self._db.execute("ALTER TABLE concepts ADD COLUMN name TEXT")
            self._db.commit()

    # ------------------------------------------------------------------ writes
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        found: set[str] = set()
        for chunk in chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0] for r in self._db.execute(f"SELECT id FROM records WHERE id IN ({marks})", chunk)
            )
        return found

    def insert_records(
        self,
        records: Sequence[Record],
        vectors: Mapping[str, Mapping[str, np.ndarray]],
        concepts: Mapping[str, Sequence[Mapping[str, Any]]],
    ) -> list[str]:
        """Insert the records not stored yet, with their vectors and concepts, in ONE transaction; returns their ids."""
        now = time.time()
        with self._transaction() as db:
            known = self.existing_ids(r.id for r in records)
            fresh = [r for r in records if r.id not in known]
            db.executemany(
                "INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.id,
                        r.kind,
                        r.source,
                        r.image_path,
                        r.text(),
                        r.modality,
                        r.body_part,
                        r.plane,
                        r.split,
                        json.dumps(list(r.labels)),
                        record_to_json(r),
                        now,
                    )
                    for r in fresh
                ],
            )
            fresh_ids = {r.id for r in fresh}
            db.executemany(
                "INSERT INTO vectors VALUES (?,?,?)",
                [
                    (rid, space, np.asarray(vec, dtype=np.float32).tobytes())
                    for space, by_id in vectors.items()
                    for rid, vec in by_id.items()
                    if rid in fresh_ids
                ],
            )
            db.executemany(
                _INSERT_CONCEPT, _concept_rows({r: concepts[r] for r in concepts if r in fresh_ids})
            )
            db.executemany("INSERT INTO changes (record_id) VALUES (?)", [(r.id,) for r in fresh])
        return [r.id for r in fresh]

    def ids_without_vector(self, space: str, ids: Iterable[str]) -> set[str]:
        """Those of `ids` that have no vector in `space` (records ingested before the space existed)."""
        ids = list(ids)
        have: set[str] = set()
        for chunk in chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            have.update(
                r[0]
                for r in self._db.execute(
                    f"SELECT record_id FROM vectors WHERE space = ? AND record_id IN ({marks})",
                    (space, *chunk),
                )
            )
        return set(ids) - have

    def insert_vectors(self, space: str, vectors: Mapping[str, np.ndarray]) -> int:
        """Store vectors of existing records in `space` (replacing any), in one transaction; returns how many."""
        rows = [(rid, space, np.asarray(v, dtype=np.float32).tobytes()) for rid, v in vectors.items()]
        with self._transaction() as db:
            present = self.existing_ids(vectors)
            db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?,?,?)", [r for r in rows if r[0] in present]
            )
            db.executemany("INSERT INTO changes (record_id) VALUES (?)", [(rid,) for rid in sorted(present)])
        return len(present)

    def replace_concepts(self, concepts: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Replace the concept mentions of the given records (after the graph changed), in one transaction."""
        with self._transaction() as db:
            for chunk in chunks(list(concepts), 900):
                db.execute(f"DELETE FROM concepts WHERE record_id IN ({','.join('?' * len(chunk))})", chunk)
            db.executemany(_INSERT_CONCEPT, _concept_rows(concepts))

    def iter_records(self, batch_size: int = 512) -> Iterator[list[Record]]:
        """All records, in id order, in batches."""
        last = ""
        while True:
            rows = self._db.execute(
                "SELECT id, data FROM records WHERE id > ? ORDER BY id LIMIT ?", (last, batch_size)
            ).fetchall()
            if not rows:
                return
            yield [record_from_json(data) for _, data in rows]
            last = rows[-1][0]

    def delete_records(self, ids: Sequence[str]) -> list[str]:
        """Delete records with their vectors and concepts; returns the ids that existed."""
        ids = list(dict.fromkeys(ids))
        with self._transaction() as db:
            present = sorted(self.existing_ids(ids))
            for chunk in chunks(present, 900):
                marks = ",".join("?" * len(chunk))
                for table, column in (("records", "id"), ("vectors", "record_id"), ("concepts", "record_id")):
                    db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
            db.executemany("INSERT INTO changes (record_id) VALUES (?)", [(i,) for i in present])
        return present

    # ------------------------------------------------------------------ reads
    def count(self, source: str | None = None) -> int:
        if source:
            return self._db.execute("SELECT COUNT(*) FROM records WHERE source = ?", (source,)).fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def vector_count(self, space: str) -> int:
        """How many records have a vector in `space` (records with no text have none in a text space)."""
        return self._db.execute("SELECT COUNT(*) FROM vectors WHERE space = ?", (space,)).fetchone()[0]

    def get(self, record_id: str) -> Record:
        row = self._db.execute("SELECT data FROM records WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            raise RecordNotFoundError(f"no record {record_id!r} in collection {self.label!r}")
        return record_from_json(row[0])

    def get_many(self, ids: Sequence[str]) -> dict[str, Record]:
        out: dict[str, Record] = {}
        for chunk in chunks(list(ids), 900):
            marks = ",".join("?" * len(chunk))
            for rid, data in self._db.execute(f"SELECT id, data FROM records WHERE id IN ({marks})", chunk):
                out[rid] = record_from_json(data)
        return out

    def payloads(self) -> dict[str, dict[str, Any]]:
        """record id -> payload (the filterable metadata), for every record."""
        out: dict[str, dict[str, Any]] = {}
        columns = ", ".join(PAYLOAD_FIELDS)
        for row in self._db.execute(f"SELECT id, {columns}, labels FROM records"):
            payload = {name: value for name, value in zip(PAYLOAD_FIELDS, row[1:-1]) if value}
            labels = json.loads(row[-1])
            if labels:
                payload["labels"] = labels
            out[row[0]] = payload
        return out

    _CONCEPT_COLUMNS = ("record_id", "concept_id", "name", "polarity", "field", "start", "end", "sentence")

    def _concept_rows(self, column: str, values: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Concept rows whose `column` ("record_id" or "concept_id") is one of `values`, grouped by record."""
        out: dict[str, list[dict[str, Any]]] = {}
        select = ", ".join(self._CONCEPT_COLUMNS)
        for chunk in chunks(list(dict.fromkeys(values)), 900):
            marks = ",".join("?" * len(chunk))
            query = f"SELECT {select} FROM concepts WHERE {column} IN ({marks}) ORDER BY record_id, start"
            for row in self._db.execute(query, chunk):
                out.setdefault(row[0], []).append(dict(zip(self._CONCEPT_COLUMNS[1:], row[1:])))
        return out

    def concepts_of(self, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """record id -> its concept mentions {concept_id, name, polarity, field, start, end, sentence}."""
        found = self._concept_rows("record_id", ids)
        return {record_id: found.get(record_id, []) for record_id in ids}

    def records_mentioning(self, concept_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """record id -> its mentions of any of `concept_ids` (any polarity), for every record that has one."""
        return self._concept_rows("concept_id", concept_ids)

    def evidence_mentions(
        self, fields: Sequence[str], ids: Sequence[str] | None = None
    ) -> list[tuple[str, str, str]]:
        """(record id, concept id, polarity) of every mention in `fields` of the records `ids` (None: all
        records), in table order: the rows of the concept ranker's in-memory posting index."""
        field_marks = ",".join("?" * len(fields))
        query = f"SELECT record_id, concept_id, polarity FROM concepts WHERE field IN ({field_marks})"
        if ids is None:
            return self._db.execute(query, tuple(fields)).fetchall()
        out: list[tuple[str, str, str]] = []
        for chunk in chunks(list(dict.fromkeys(ids)), 900):
            marks = ",".join("?" * len(chunk))
            out.extend(self._db.execute(f"{query} AND record_id IN ({marks})", (*fields, *chunk)))
        return out

    def concepts_version(self) -> tuple[int, int]:
        """(last change seq, largest concept row id): moves on every insert, delete and concept relink
        (a relink that only removes mentions, with no new row, does not move it)."""
        row = self._db.execute(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM changes), (SELECT COALESCE(MAX(rowid), 0) FROM concepts)"
        ).fetchone()
        return int(row[0]), int(row[1])

    def has_concepts(self) -> bool:
        return self._db.execute("SELECT 1 FROM concepts LIMIT 1").fetchone() is not None

    def counts(self) -> dict[str, dict[str, int]]:
        """Records by source and by kind, vectors by space."""
        queries = {
            "by_source": "SELECT source, COUNT(*) FROM records GROUP BY source",
            "by_kind": "SELECT kind, COUNT(*) FROM records GROUP BY kind",
            "vectors": "SELECT space, COUNT(*) FROM vectors GROUP BY space",
        }
        return {name: dict(self._db.execute(sql).fetchall()) for name, sql in queries.items()}

    def changed_since(self, seq: int) -> list[str]:
        """Ids of the records touched by changes after `seq` (they may since have been deleted)."""
        return [
            row[0] for row in self._db.execute("SELECT DISTINCT record_id FROM changes WHERE seq > ?", (seq,))
        ]

    def vector_rows(self, space: str, ids: Sequence[str]) -> list[tuple[str, bytes, str]]:
        """(record id, float32 vector bytes, record JSON) of those `ids` that have a vector in `space`."""
        marks = ",".join("?" * len(ids))
        return self._db.execute(
            f"SELECT v.record_id, v.vector, r.data FROM vectors v JOIN records r ON r.id = v.record_id "
            f"WHERE v.space = ? AND v.record_id IN ({marks})",
            (space, *ids),
        ).fetchall()

    def keyword_texts(self) -> list[tuple[str, str]]:
        """(id, text) of every record that has text, in id order."""
        return self._db.execute("SELECT id, text FROM records WHERE text != '' ORDER BY id").fetchall()

    def last_change(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]

    def _watermark(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_watermark(self, key: str, value: int) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def close(self) -> None:
        self._db.close()


def chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
