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

Concurrent readers: an index is loaded (and caught up) before it is published, under a lock, so two threads never
load one twice; inside `pinned()` a thread's `index()` / `keyword_index()` serve what is loaded without replaying
changes, so many threads may search at once while no writer runs (see `ui.api.engine`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import indexers
from engine.datasets.record import Record
from engine.errors import CollectionError
from engine.store import RecordStore, chunks, payload_of, record_from_json
from indexers import defaults

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class Collection(RecordStore):
    """Records, their vectors per space and their concepts, with one vector index per space.

    Open with `Collection.open(home, name, ...)`; close with `close()` (or use as a context manager).
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.name: str = manifest["name"]
        super().__init__(path / "records.sqlite", label=self.name)
        self._indexes: dict[str, indexers.VectorIndex] = {}
        self._keyword: indexers.BM25Index | None = None
        self._applied: dict[str, int] = {}  # "index:<space>" / "keyword" -> last change this process applied
        self._load_lock = threading.RLock()  # loading an index, or replaying changes into one
        self._pin = threading.local()

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
        super().close()

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

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """In this thread, `index()` and `keyword_index()` serve the loaded indexes without replaying changes
        (indexes not loaded yet are still loaded and caught up). For concurrent readers: catch up first, under an
        exclusive lock, when `is_current()` is False."""
        previous = getattr(self._pin, "on", False)
        self._pin.on = True
        try:
            yield
        finally:
            self._pin.on = previous

    def is_current(self) -> bool:
        """Whether every loaded index has applied every change in SQLite (so pinned readers miss nothing)."""
        last = self.last_change()
        return all(self._applied.get(key, -1) >= last for key in self._loaded_keys())

    def refresh(self) -> None:
        """Replay the changes made since into every loaded index (in memory; `sync()` also saves them)."""
        for space in list(self._indexes):
            self.index(space)
        if self._keyword is not None:
            self.keyword_index()

    def _loaded_keys(self) -> list[str]:
        keys = [f"index:{space}" for space in list(self._indexes)]
        return keys + (["keyword"] if self._keyword is not None else [])

    def index(self, space: str) -> indexers.VectorIndex:
        """The vector index of `space`, caught up (in memory) with every change in SQLite, including changes
        another process made since this one opened it (unless this thread is `pinned()`)."""
        index = self._indexes.get(space)
        if index is None:
            with self._load_lock:
                if space not in self._indexes:
                    self._indexes[space] = self._load_index(space)
                return self._indexes[space]
        if not getattr(self._pin, "on", False):
            with self._load_lock:
                self._catch_up(space, index)
        return index

    def _load_index(self, space: str) -> indexers.VectorIndex:
        """Open the index of `space` from its files and replay the changes made since they were saved."""
        if space not in self.spaces:
            raise CollectionError(
                f"collection {self.name!r} has no {space!r} space (it has {sorted(self.spaces)})"
            )
        applied = self._watermark(f"index:{space}")  # read before loading: the files are at least this new
        options = self._index_options(space)
        if self.manifest["backend"] == "faiss":
            options, rebuild = self._auto_faiss_options(space, options)
            applied = -1 if rebuild else applied
        try:
            index = indexers.create(self.manifest["backend"], dim=self.spaces[space]["dim"], **options)
        except indexers.CorruptIndexError as e:
            if self.manifest["backend"] != "faiss":  # a server's collection is not ours to replace
                raise
            index, applied = self._rebuild_corrupt_faiss(space, options, e), -1
        if self.manifest["backend"] == "faiss" and not (Path(options["path"]) / "manifest.json").is_file():
            applied = -1  # no saved files (never saved, deleted by hand, moved aside): replay every record
        if applied < 0 <= self._watermark(f"index:{space}"):
            self._set_watermark(f"index:{space}", -1)  # so the next sync saves the rebuilt index
        self._applied[f"index:{space}"] = applied
        self._catch_up(space, index)
        return index

    def _rebuild_corrupt_faiss(
        self, space: str, options: dict[str, Any], error: Exception
    ) -> indexers.VectorIndex:
        """A damaged faiss folder (truncated file, missing generation, bad manifest) is moved aside to
        ``<folder>.corrupt`` (one copy kept for inspection) and an empty index replaces it; the caller replays
        every record from SQLite, the source of truth, and the next save writes it back."""
        folder = Path(options["path"])
        aside = folder.with_name(folder.name + ".corrupt")
        logger.warning(
            "%s index of %s is damaged (%s): moved to %s, rebuilding from SQLite",
            space,
            self.name,
            error,
            aside,
        )
        shutil.rmtree(aside, ignore_errors=True)
        folder.rename(aside)
        return indexers.create("faiss", dim=self.spaces[space]["dim"], **options)

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

    def _auto_faiss_options(self, space: str, options: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Resolve faiss `kind="auto"` (the default when no kind is set) by the space's vector count, with
        `indexers.defaults.auto_faiss_options` (flat while small, then IVF-Flat sized to the collection);
        explicit settings win. A stored index built for another size (kind or nlist) is deleted, and its
        watermark reset, so it is rebuilt from SQLite; returns (options, rebuilt)."""
        requested = {key: value for key, value in options.items() if key != "path"}
        if requested.get("kind", defaults.AUTO) != defaults.AUTO:
            return options, False
        folder = Path(options["path"])
        built = self.spaces[space].get("faiss_auto")
        if built is None and folder.is_dir() and any(folder.iterdir()):
            built = {"kind": "flat"}  # stored before kinds were chosen by size: the old default
        gpu = requested.get("use_gpu", "auto") != "never" and defaults.visible_gpus() > 0
        count, dim = self.vector_count(space), self.spaces[space]["dim"]
        resolved, rebuild = defaults.auto_faiss_options(requested, count, dim, built, gpu=gpu)
        if rebuild:
            logger.info(
                "rebuilding the %s index of %s/%s for %d vectors", resolved["kind"], self.name, space, count
            )
            shutil.rmtree(folder, ignore_errors=True)
            self._set_watermark(f"index:{space}", -1)
        shape = {field: resolved.get(field) for field in defaults.SHAPE_FIELDS}
        if built != shape:
            self.spaces[space]["faiss_auto"] = shape
            _write_json_atomic(self.path / "manifest.json", self.manifest)
        return {**resolved, "path": options["path"]}, rebuild

    def _catch_up(self, space: str, index: indexers.VectorIndex) -> None:
        """Replay the changes this process's copy of the index has not applied (after a crash, or writes by
        another process): records that still exist are upserted, the others deleted. In memory only."""
        key = f"index:{space}"
        last = self.last_change()
        if last <= self._applied[key]:
            return
        started = time.perf_counter()
        touched = self.changed_since(self._applied[key])
        added = deleted = 0
        for chunk in chunks(touched, 2048):
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
        rows = self.vector_rows(space, ids)
        vectors = np.zeros((len(rows), self.spaces[space]["dim"]), dtype=np.float32)
        for i, (_, blob, _) in enumerate(rows):
            vectors[i] = np.frombuffer(blob, dtype=np.float32)
        payloads = [payload_of(record_from_json(data)) for _, _, data in rows]
        return [row[0] for row in rows], vectors, payloads

    def keyword_index(self) -> indexers.BM25Index:
        """BM25 over the text of every record that has text, rebuilt (in memory) when records changed (unless this
        thread is `pinned()`)."""
        keyword = self._keyword
        if keyword is None:
            with self._load_lock:
                if self._keyword is None:
                    self._keyword = self._load_keyword()
                return self._keyword
        if not getattr(self._pin, "on", False):
            with self._load_lock:
                self._refresh_keyword(keyword)
        return keyword

    def _load_keyword(self) -> indexers.BM25Index:
        self._applied["keyword"] = self._watermark("keyword")
        try:
            keyword = indexers.BM25Index(path=str(self.path / "keyword"))
        except indexers.IndexerError as e:  # unreadable or from another version: rebuild from SQLite
            logger.warning("BM25 index of %s not loaded (%s); rebuilding", self.name, e)
            keyword, self._applied["keyword"] = indexers.BM25Index(path=None), -1
            keyword.path = self.path / "keyword"  # saved over the unreadable one on the next sync
        self._refresh_keyword(keyword)
        return keyword

    def _refresh_keyword(self, keyword: indexers.BM25Index) -> None:
        last = self.last_change()
        if self._applied["keyword"] < last:
            started = time.perf_counter()
            rows = self.keyword_texts()
            keyword.index([r[0] for r in rows], [r[1] for r in rows])
            self._applied["keyword"] = last
            logger.info(
                "BM25 index of %s rebuilt over %d records in %.1fs",
                self.name,
                len(rows),
                time.perf_counter() - started,
            )

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
            for record_id, vector in by_id.items():
                self._check_vector(space, record_id, vector)
        return self.insert_records(records, vectors, concepts)

    def _check_vector(self, space: str, record_id: str, vector: np.ndarray) -> None:
        """Refuse a vector of the wrong shape, or with NaN / infinite values (once stored, it would break
        every later catch-up of the index)."""
        dim = self.spaces[space]["dim"]
        shape = np.shape(vector)
        if shape != (dim,):
            raise CollectionError(
                f"vector for {record_id!r} in space {space!r} has shape {shape}, expected ({dim},)"
            )
        if not np.isfinite(vector).all():
            raise CollectionError(
                f"vector for {record_id!r} in space {space!r} is not finite (NaN or infinite values): "
                "check the encoder"
            )

    def add_vectors(self, space: str, vectors: Mapping[str, np.ndarray]) -> int:
        """Add vectors of existing records to `space` in one transaction (indexes follow on `sync`)."""
        for record_id, vector in vectors.items():
            self._check_vector(space, record_id, np.asarray(vector))
        return self.insert_vectors(space, vectors)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete records (and their vectors and concepts) by id; indexes follow. Returns how many existed."""
        present = self.delete_records(ids)
        if present:
            self.sync()
        return len(present)

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.manifest["backend"],
            "records": self.count(),
            **self.counts(),
            "spaces": self.spaces,
        }


def list_collections(home: Path) -> list[str]:
    root = Path(home) / "collections"
    return sorted(p.name for p in root.glob("*") if (p / "manifest.json").is_file()) if root.is_dir() else []


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
