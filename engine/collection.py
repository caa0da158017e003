"""A collection: SQLite (WAL) is the source of truth for records, vectors and concepts; indexes are caches.

Layout of ``<home>/collections/<name>/``::

    manifest.json        backend, its options, and per space the encoder name and dimension
    records.sqlite       records, vectors (float32 blobs), concepts, and a change log
    index/<space>/       one vector index per space (faiss folder, qdrant folder or milvus .db file)
    keyword/             BM25 over record text

Every write to SQLite appends the touched record ids to ``changes`` in the same transaction. Each index keeps a
watermark (the last change it has applied, stored in SQLite *after* the index was saved); on open, an index
replays the changes after its watermark: a record that still exists is upserted, one that does not is deleted.
A kill -9 therefore loses at most the batch whose transaction had not committed, and a replay after a crash is
idempotent (indexes upsert by id).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import indexers
from engine.datasets.record import QA, Record
from engine.errors import CollectionError, RecordNotFoundError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
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


class Collection:
    """Records, their vectors per space and their concepts, with one vector index per space.

    Open with `Collection.open(home, name, ...)`; close with `close()` (or use as a context manager).
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.name: str = manifest["name"]
        self._db = sqlite3.connect(path / "records.sqlite", timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()
        self._indexes: dict[str, indexers.VectorIndex] = {}
        self._keyword: indexers.BM25Index | None = None
        self._applied: dict[str, int] = {}  # "index:<space>" / "keyword" -> last change this process applied

    def _migrate(self) -> None:
        """Bring a collection written by an older medsearch to the current schema (additive changes only)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(concepts)")}
        if "name" not in columns:  # before 0.1: concepts had no name column
            self._db.execute("ALTER TABLE concepts ADD COLUMN name TEXT")
            self._db.commit()

    # ------------------------------------------------------------------ open / create
    @classmethod
    def open(
        cls,
        home: Path,
        name: str,
        *,
        create: bool = False,
        backend: str | None = None,
        backend_options: Mapping[str, Any] | None = None,
    ) -> Collection:
        """Open collection `name` under `home`, creating it when `create` (with `backend`, default faiss).

        Raises CollectionError when it does not exist (and not `create`) or when `backend` differs from the one
        the collection was built with.
        """
        path = Path(home) / "collections" / name
        manifest_path = path / "manifest.json"
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            if backend and backend != manifest["backend"]:
                raise CollectionError(
                    f"collection {name!r} uses the {manifest['backend']!r} backend, not {backend!r}: "
                    f"use another --collection name, or `medsearch reindex --collection {name} --backend {backend}`"
                )
        elif create:
            if backend is not None and backend not in indexers.names() and ":" not in backend:
                raise CollectionError(f"unknown backend {backend!r}; choose one of {indexers.names()}")
            path.mkdir(parents=True, exist_ok=True)
            manifest = {
                "name": name,
                "format_version": FORMAT_VERSION,
                "backend": backend or "faiss",
                "backend_options": dict(backend_options or {}),
                "spaces": {},
                "created_at": time.time(),
            }
            _write_json_atomic(manifest_path, manifest)
        else:
            existing = sorted(p.name for p in (Path(home) / "collections").glob("*") if p.is_dir())
            raise CollectionError(
                f"no collection {name!r} in {home} (existing: {existing or 'none'}); ingest first"
            )
        return cls(path, manifest)

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for index in self._indexes.values():
            index.close()
        self._indexes.clear()
        self._db.close()

    # ------------------------------------------------------------------ spaces and indexes
    @property
    def spaces(self) -> dict[str, dict[str, Any]]:
        """space -> {"encoder": registry name, "dim": int}."""
        return self.manifest["spaces"]

    def ensure_space(self, space: str, encoder_name: str, dim: int) -> None:
        """Declare a vector space (first ingest); refuse a different encoder or dim for an existing one."""
        known = self.spaces.get(space)
        if known is None:
            self.spaces[space] = {"encoder": encoder_name, "dim": int(dim)}
            _write_json_atomic(self.path / "manifest.json", self.manifest)
        elif known["dim"] != dim or known["encoder"] != encoder_name:
            raise CollectionError(
                f"collection {self.name!r} space {space!r} was built with encoder {known['encoder']!r} "
                f"(dim {known['dim']}), not {encoder_name!r} (dim {dim}): use a new collection"
            )

    def index(self, space: str) -> indexers.VectorIndex:
        """The vector index of `space`, caught up (in memory) with every change in SQLite, including changes
        another process made since this one opened it."""
        if space not in self._indexes:
            if space not in self.spaces:
                raise CollectionError(
                    f"collection {self.name!r} has no {space!r} space (it has {sorted(self.spaces)})"
                )
            applied = self._watermark(
                f"index:{space}"
            )  # read before loading: the files are at least this new
            self._indexes[space] = indexers.create(
                self.manifest["backend"], dim=self.spaces[space]["dim"], **self._index_options(space)
            )
            self._applied[f"index:{space}"] = applied
        self._catch_up(space)
        return self._indexes[space]

    def _index_options(self, space: str) -> dict[str, Any]:
        backend = self.manifest["backend"]
        options = dict(self.manifest.get("backend_options", {}))
        folder = self.path / "index"
        folder.mkdir(exist_ok=True)
        if backend == "faiss":
            options.setdefault("path", str(folder / space))
        elif backend == "qdrant":
            if not options.get("url"):
                options.setdefault("path", str(folder / f"{space}-qdrant"))
            options.setdefault("collection", f"{self.name}_{space}".replace("-", "_"))
        elif backend == "milvus":
            options.setdefault("uri", str(folder / f"{space}.db"))
            options.setdefault("collection", f"{self.name}_{space}".replace("-", "_"))
        return options

    def _catch_up(self, space: str) -> None:
        """Replay the changes this process's copy of the index has not applied (after a crash, or writes by
        another process): records that still exist are upserted, the others deleted. In memory only."""
        key = f"index:{space}"
        last = self.last_change()
        if last <= self._applied[key]:
            return
        started = time.perf_counter()
        touched = [
            row[0]
            for row in self._db.execute(
                "SELECT DISTINCT record_id FROM changes WHERE seq > ?", (self._applied[key],)
            )
        ]
        index = self._indexes[space]
        added = deleted = 0
        for chunk in _chunks(touched, 2048):
            ids, vectors, payloads = self._vectors_for(space, chunk)
            if ids:
                index.add(ids, vectors, payloads)
                added += len(ids)
            gone = sorted(set(chunk) - set(ids))
            if gone:
                deleted += index.delete(gone)
        self._applied[key] = last
        logger.info(
            "index %s/%s caught up to change %d: %d upserted, %d deleted in %.1fs",
            self.name,
            space,
            last,
            added,
            deleted,
            time.perf_counter() - started,
        )

    def _vectors_for(self, space: str, ids: Sequence[str]) -> tuple[list[str], np.ndarray, list[dict]]:
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT v.record_id, v.vector, r.data FROM vectors v JOIN records r ON r.id = v.record_id "
            f"WHERE v.space = ? AND v.record_id IN ({marks})",
            (space, *ids),
        ).fetchall()
        dim = self.spaces[space]["dim"]
        vectors = np.zeros((len(rows), dim), dtype=np.float32)
        for i, (_, blob, _) in enumerate(rows):
            vectors[i] = np.frombuffer(blob, dtype=np.float32)
        payloads = [payload_of(record_from_json(data)) for _, _, data in rows]
        return [row[0] for row in rows], vectors, payloads

    def keyword_index(self) -> indexers.BM25Index:
        """BM25 over the text of every record that has text, rebuilt (in memory) when records changed."""
        if self._keyword is None:
            self._applied["keyword"] = self._watermark("keyword")
            try:
                self._keyword = indexers.BM25Index(path=str(self.path / "keyword"))
            except indexers.IndexerError as e:  # unreadable or from another version: rebuild from SQLite
                logger.warning("BM25 index of %s not loaded (%s); rebuilding", self.name, e)
                self._keyword, self._applied["keyword"] = indexers.BM25Index(path=None), -1
                self._keyword.path = self.path / "keyword"  # saved over the unreadable one on the next sync
        last = self.last_change()
        if self._applied["keyword"] < last:
            started = time.perf_counter()
            rows = self._db.execute("SELECT id, text FROM records WHERE text != '' ORDER BY id").fetchall()
            self._keyword.index([r[0] for r in rows], [r[1] for r in rows])
            self._applied["keyword"] = last
            logger.info(
                "BM25 index of %s rebuilt over %d records in %.1fs",
                self.name,
                len(rows),
                time.perf_counter() - started,
            )
        return self._keyword

    def sync(self) -> None:
        """Bring every index (vector spaces and BM25) up to date with SQLite, save them, and record how far
        they got (the watermarks other processes and the next open start from)."""
        for space in self.spaces:
            index = self.index(space)
            key = f"index:{space}"
            if self._watermark(key) < self._applied[key]:
                index.save()
                self._set_watermark(key, self._applied[key])
        keyword = self.keyword_index()
        if self._watermark("keyword") < self._applied["keyword"]:
            keyword.save()
            self._set_watermark("keyword", self._applied["keyword"])

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
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0] for r in self._db.execute(f"SELECT id FROM records WHERE id IN ({marks})", chunk)
            )
        return found

    def add(
        self,
        records: Sequence[Record],
        vectors: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        concepts: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    ) -> list[str]:
        """Write records with their vectors and concepts in ONE transaction; returns the ids added.

        vectors: space -> {record id -> float32 (dim,)}; concepts: record id -> [{concept_id, name, polarity,
        field, start, end, sentence}]. Records whose id is already stored are skipped (ingest is idempotent by id).
        Indexes are not touched here: call `sync()` (ingest does, per batch).
        """
        vectors = vectors or {}
        concepts = concepts or {}
        for space, by_id in vectors.items():
            dim = self.spaces[space]["dim"]
            for record_id, vector in by_id.items():
                if vector.shape != (dim,):
                    raise CollectionError(
                        f"vector for {record_id!r} in space {space!r} has shape {vector.shape}, "
                        f"expected ({dim},)"
                    )
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
        for chunk in _chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            have.update(
                r[0]
                for r in self._db.execute(
                    f"SELECT record_id FROM vectors WHERE space = ? AND record_id IN ({marks})",
                    (space, *chunk),
                )
            )
        return set(ids) - have

    def add_vectors(self, space: str, vectors: Mapping[str, np.ndarray]) -> int:
        """Add vectors of existing records to `space` in one transaction (indexes follow on `sync`)."""
        dim = self.spaces[space]["dim"]
        rows = [(rid, space, np.asarray(v, dtype=np.float32).tobytes()) for rid, v in vectors.items()]
        if any(np.asarray(v).shape != (dim,) for v in vectors.values()):
            raise CollectionError(f"vectors for space {space!r} must have shape ({dim},)")
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
            for chunk in _chunks(list(concepts), 900):
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

    def delete(self, ids: Sequence[str]) -> int:
        """Delete records (and their vectors and concepts) by id; indexes follow. Returns how many existed."""
        ids = list(dict.fromkeys(ids))
        with self._transaction() as db:
            present = sorted(self.existing_ids(ids))
            for chunk in _chunks(present, 900):
                marks = ",".join("?" * len(chunk))
                for table, column in (("records", "id"), ("vectors", "record_id"), ("concepts", "record_id")):
                    db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
            db.executemany("INSERT INTO changes (record_id) VALUES (?)", [(i,) for i in present])
        if present:
            self.sync()
        return len(present)

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
            raise RecordNotFoundError(f"no record {record_id!r} in collection {self.name!r}")
        return record_from_json(row[0])

    def get_many(self, ids: Sequence[str]) -> dict[str, Record]:
        out: dict[str, Record] = {}
        for chunk in _chunks(list(ids), 900):
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
        for chunk in _chunks(list(dict.fromkeys(values)), 900):
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

    def has_concepts(self) -> bool:
        return self._db.execute("SELECT 1 FROM concepts LIMIT 1").fetchone() is not None

    def stats(self) -> dict[str, Any]:
        by_source = dict(self._db.execute("SELECT source, COUNT(*) FROM records GROUP BY source").fetchall())
        by_kind = dict(self._db.execute("SELECT kind, COUNT(*) FROM records GROUP BY kind").fetchall())
        vectors = dict(self._db.execute("SELECT space, COUNT(*) FROM vectors GROUP BY space").fetchall())
        return {
            "name": self.name,
            "backend": self.manifest["backend"],
            "records": self.count(),
            "by_source": by_source,
            "by_kind": by_kind,
            "vectors": vectors,
            "spaces": self.spaces,
        }

    def last_change(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]

    def _watermark(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_watermark(self, key: str, value: int) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))


def list_collections(home: Path) -> list[str]:
    root = Path(home) / "collections"
    return sorted(p.name for p in root.glob("*") if (p / "manifest.json").is_file()) if root.is_dir() else []


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
