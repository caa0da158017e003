"""`FaissIndex`: the in-process vector backend (flat, HNSW, IVF-Flat, IVF-PQ), persisted in a folder.

String ids map to int64 keys (`faiss_keys.KeyTable`); payloads live beside the index for filters, which
become an id selector (a bitmap over keys) passed in SearchParameters, so a filtered search ranks only
matching vectors instead of post-filtering an unfiltered top-k. Query rows that come back short while
more matching vectors exist (HNSW and IVF can miss under a tight selector) are redone exactly.
Searches may run concurrently with each other (faiss reads are thread-safe; the filter-mask cache tolerates
racing fills), but not with a write: one writer, and no search concurrent with a write.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexers import faiss_build as build
from indexers.errors import (
    CorruptIndexError,
    DimensionMismatchError,
    IndexerError,
    InvalidInputError,
    OptionsError,
)
from indexers.faiss_keys import KeyTable
from indexers.filters import Filter
from indexers.options import FaissOptions, resolve_options
from indexers.storage import (
    FORMAT_VERSION,
    MANIFEST,
    data_file,
    folder_lock,
    fsync_path,
    new_generation,
    read_manifest,
    remove_stale,
    write_json_atomic,
)
from indexers.validation import as_batch, check_ids, check_search, empty_results

logger = logging.getLogger(__name__)

_MASK_CACHE_SIZE = 8


class FaissIndex:
    """A FAISS index of string ids, L2-normalised float32 vectors and payloads.

    Args:
        dim: vector dimension.
        path: folder to persist in (loaded on construction when it holds an index); None = in memory.
        options: a FaissOptions; keyword `fields` (kind="hnsw", ef_search=128, ...) override it.
    """

    def __init__(
        self,
        dim: int,
        path: str | os.PathLike[str] | None = None,
        options: FaissOptions | None = None,
        **fields: Any,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidInputError(f"dim={dim!r}: expected a positive integer")
        self.dim = dim
        self.options = resolve_options(FaissOptions, options, fields)
        self.path = Path(path) if path is not None else None
        if self.options.kind == "ivfpq":
            build.auto_pq_m(dim, self.options.pq_m)
        self._keys = KeyTable()
        self._masks: dict[Filter | None, np.ndarray] = {}
        self._gpu_index: faiss.Index | None = None
        self._use_gpu = build.decide_gpu(self.options.use_gpu, self.options.kind, build.gpu_count())
        self._index: faiss.Index | None = None
        if self.path is not None:
            with folder_lock(self.path, exclusive=False):  # a concurrent save must not prune what we read
                manifest = read_manifest(self.path, "faiss")
                self._index = self._load(manifest) if manifest else None
        if self._index is None:
            self._index = build.empty_index(dim, self.options)
        logger.info(
            "faiss %s index at %s: %d vectors, dim %d, gpu=%s",
            self.options.kind,
            self._where,
            len(self._keys),
            dim,
            self._use_gpu,
        )

    # ------------------------------------------------------------------ properties
    @property
    def kind(self) -> str:
        """The faiss kind: flat, hnsw, ivfflat or ivfpq."""
        return self.options.kind

    @property
    def trained(self) -> bool:
        """False while an IVF kind still serves from its exact staging index (always True otherwise)."""
        return self.kind not in build.IVF_KINDS or build.is_ivf(self._open_index())

    @property
    def _where(self) -> str:
        return str(self.path) if self.path is not None else "<memory>"

    def _open_index(self) -> faiss.Index:
        if self._index is None:
            raise IndexerError(f"faiss index at {self._where} is closed: create it again")
        return self._index

    # ------------------------------------------------------------------ writes
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Upsert vectors float32 (n, dim) with their ids and payloads (see `VectorIndex.add`)."""
        index = self._open_index()
        batch = as_batch(ids, vectors, payloads, self.dim, self._where)
        if not batch.ids:
            return
        self._release(batch.ids)
        keys = self._keys.assign(batch.ids, batch.payloads)
        if not self.trained and index.ntotal + len(keys) >= build.train_threshold(self.options):
            self._train(batch.vectors, keys)
        else:
            index.add_with_ids(batch.vectors, keys)
        self._changed()

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ids (unknown ones are ignored); returns how many were removed."""
        self._open_index()
        removed = self._release(check_ids(ids))
        self._changed()
        return removed

    def _release(self, ids: Sequence[str]) -> int:
        keys = self._keys.release(ids)
        if len(keys) and self.kind != "hnsw":  # HNSW keeps them as tombstones (no longer in the key table)
            self._open_index().remove_ids(keys)
        return len(keys)

    def _changed(self) -> None:
        self._masks.clear()
        self._gpu_index = None
        index = self._open_index()
        tombstones = index.ntotal - len(self._keys)
        if self.kind == "hnsw" and tombstones > self.options.compact_ratio * max(index.ntotal, 1):
            self._compact()

    def _train(self, vectors: np.ndarray, keys: np.ndarray) -> None:
        held_keys, held_vectors = build.stored_vectors(self._open_index())
        all_vectors = np.vstack([held_vectors, vectors])
        all_keys = np.concatenate([held_keys, keys])
        index = build.new_ivf(self.dim, self.options, all_vectors)
        index.add_with_ids(all_vectors, all_keys)
        self._index = index

    def _compact(self) -> None:
        keys, vectors = build.stored_vectors(self._open_index())
        live = self._keys.mask(None)[keys]
        rebuilt = build.new_hnsw(self.dim, self.options)
        rebuilt.add_with_ids(np.ascontiguousarray(vectors[live]), keys[live])
        logger.info("rebuilt faiss hnsw at %s without %d deleted vectors", self._where, int((~live).sum()))
        self._index = rebuilt

    def set_search_params(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change HNSW efSearch and/or IVF nprobe for later searches (benchmarks sweep these)."""
        changes = {name: value for name, value in (("ef_search", ef_search), ("nprobe", nprobe)) if value}
        self.options = dataclasses.replace(self.options, **changes)

    # ------------------------------------------------------------------ reads
    def search(
        self, vectors: np.ndarray, k: int, filter: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ids object (n_queries, k) and cosine scores float32 (n_queries, k), padded with ""/-inf."""
        self._open_index()
        queries, k = check_search(vectors, k, filter, self.dim, self._where)
        if len(self._keys) == 0 or queries.shape[0] == 0:
            return empty_results(queries.shape[0], k)
        mask = self._selection(filter)
        if mask is None:
            distances, labels = self._search_all(queries, k)
        else:
            allowed = int(mask.sum())
            if allowed == 0:
                return empty_results(queries.shape[0], k)
            distances, labels = self._search_selected(queries, k, mask, allowed)
        scores = np.where(labels >= 0, distances, -np.inf).astype(np.float32)
        return self._keys.names(labels), scores

    def _selection(self, filter: Filter | None) -> np.ndarray | None:
        """Keys a search may return, or None when every key in the index may be returned."""
        if filter is not None and not filter.conditions:
            filter = None
        if filter is None and self._open_index().ntotal == len(self._keys):
            return None
        mask = self._masks.get(filter)
        if mask is None:  # concurrent searches may both build it; the cache only ever gains a valid mask
            mask = self._keys.mask(filter)
            for stale in list(self._masks)[: max(0, len(self._masks) - _MASK_CACHE_SIZE + 1)]:
                self._masks.pop(stale, None)
            self._masks[filter] = mask
        return mask

    def _search_all(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self._open_index()
        params = build.search_parameters(index, self.options, k, None)
        if self._use_gpu:
            if self._gpu_index is None:
                self._gpu_index = self._copy_to_gpu(index)
            if self._gpu_index is not None:
                return self._gpu_index.search(queries, k, params=params)
        return index.search(queries, k, params=params)

    def _copy_to_gpu(self, index: faiss.Index) -> faiss.Index | None:
        logger.info("copying faiss %s index at %s to the GPU", self.kind, self._where)
        try:
            return build.to_gpu(index)
        except RuntimeError as e:  # e.g. out of GPU memory: keep serving from the CPU
            logger.warning("faiss GPU copy failed (%s); searching on the CPU from now on", e)
            self._use_gpu = False
            return None

    def _search_selected(
        self, queries: np.ndarray, k: int, mask: np.ndarray, allowed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        index = self._open_index()
        exhaustive = allowed <= self.options.exact_below
        if exhaustive and self.kind == "hnsw":
            return self._exact(queries, k, mask)
        selector, bitmap = build.bitmap_selector(mask)
        params = build.search_parameters(index, self.options, k, selector, exhaustive)
        distances, labels = index.search(queries, k, params=params)
        short = (labels >= 0).sum(axis=1) < min(k, allowed)
        if short.any() and (self.kind == "hnsw" or build.is_ivf(index)):
            logger.debug(
                "%d of %d filtered queries came back short; redoing them exactly", short.sum(), len(short)
            )
            if self.kind == "hnsw":
                distances[short], labels[short] = self._exact(queries[short], k, mask)
            else:
                params = build.search_parameters(index, self.options, k, selector, exhaustive=True)
                distances[short], labels[short] = index.search(queries[short], k, params=params)
        del bitmap  # referenced until here: faiss read it through a raw pointer
        return distances, labels

    def _exact(self, queries: np.ndarray, k: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys, vectors = build.stored_vectors(self._open_index())
        keep = mask[keys]
        return build.exact_search(queries, vectors[keep], keys[keep], k)

    def count(self) -> int:
        """Number of live vectors."""
        return len(self._keys)

    def ids(self) -> set[str]:
        """Every live id."""
        return set(self._keys.key_of)

    # ------------------------------------------------------------------ persistence
    def save(self) -> None:
        """Write the index and its manifest (ids, payloads, options) to `path` atomically."""
        index = self._open_index()
        if self.path is None:
            raise OptionsError("this faiss index lives in memory: create it with path=FOLDER to save it")
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"index-{new_generation()}.faiss"
        with folder_lock(self.path, exclusive=True):  # another process's save or load of this folder waits
            temporary = self.path / f".{name}.tmp"
            faiss.write_index(index, str(temporary))
            fsync_path(temporary)
            os.replace(temporary, self.path / name)
            manifest = {
                "format": FORMAT_VERSION,
                "backend": "faiss",
                "dim": self.dim,
                "kind": self.kind,
                "options": dataclasses.asdict(self.options),
                "index_file": name,
                **self._keys.to_json(),
            }
            write_json_atomic(self.path / MANIFEST, manifest)
            remove_stale(self.path, "index-", keep=name)
            remove_stale(self.path, ".index-", keep="")
        logger.info("saved faiss %s index (%d vectors) to %s", self.kind, len(self._keys), self.path)

    def _load(self, manifest: dict[str, Any]) -> faiss.Index:
        if manifest.get("dim") != self.dim:
            raise DimensionMismatchError(
                f"index at {self._where} has dim {manifest.get('dim')}, not {self.dim}: "
                "open it with its dim or use another path"
            )
        if manifest.get("kind") != self.kind:
            raise OptionsError(
                f"index at {self._where} was built as kind {manifest.get('kind')!r}, not {self.kind!r}: "
                f"pass kind={manifest.get('kind')!r} or use another path"
            )
        index_path = data_file(self.path, manifest, "index_file")
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError as e:  # truncated or garbled file: faiss raises RuntimeError
            raise CorruptIndexError(f"cannot read faiss index {index_path}: {e}") from e
        self._keys = KeyTable.from_json(manifest, self._where)
        expected_at_least = len(self._keys)
        if index.ntotal < expected_at_least or (self.kind != "hnsw" and index.ntotal != expected_at_least):
            raise CorruptIndexError(
                f"{index_path} holds {index.ntotal} vectors but the manifest {expected_at_least}"
            )
        if build.is_ivf(index):
            index.nprobe = min(self.options.nprobe, index.nlist)
        return index

    def close(self) -> None:
        """Drop the index (and its GPU copy); unsaved changes are lost (call save() first)."""
        self._index = None
        self._gpu_index = None
        self._masks.clear()

    def __repr__(self) -> str:
        return (
            f"FaissIndex(dim={self.dim}, kind={self.kind!r}, path={self._where!r}, count={len(self._keys)})"
        )
