"""`QdrantIndex`: Qdrant embedded (local mode, `path=`), in memory (neither), or a server (`url=`).

Point ids are uuid5 of the string id (Qdrant takes only unsigned ints and UUIDs); the string id is kept in
the payload under `_id`. Vectors use cosine distance, so scores are cosine similarities like the other
backends. Local mode is exact brute force and persists every write at once; it locks its folder, so one
client per path at a time (close before reopening).
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from indexers.errors import DimensionMismatchError, IndexerError, InvalidInputError
from indexers.filters import Condition, Filter, is_number
from indexers.options import QdrantOptions, resolve_options
from indexers.validation import (
    as_batch,
    check_ids,
    check_search,
    empty_results,
    pack_results,
)

logger = logging.getLogger(__name__)

ID_FIELD = "_id"  # payload key of the original string id (user payload keys start with a letter)
_NAMESPACE = uuid.UUID("6f1c7a52-2f0e-5b8e-9a53-3d0c2b7e9d41")
_BATCH = 256
_SCROLL = 1024


def point_id(id_: str) -> str:
    """The Qdrant point id (a uuid5 string) of a string id; stable across runs and machines."""
    return str(uuid.uuid5(_NAMESPACE, id_))


def _match_one(key: str, value: Any) -> models.FieldCondition:
    if is_number(value):  # MatchValue(40) misses a stored 40.0; a closed range matches both
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _condition(condition: Condition) -> models.FieldCondition | models.Filter:
    key = condition.field
    if condition.op == "eq":
        return _match_one(key, condition.value)
    if condition.op == "in":
        values = condition.value
        if all(isinstance(v, str) for v in values):
            return models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
        return models.Filter(should=[_match_one(key, v) for v in values])
    return models.FieldCondition(key=key, range=models.Range(**condition.value.as_dict()))


def to_qdrant_filter(filter: Filter | None) -> models.Filter | None:
    """Translate a Filter: eq -> MatchValue (numbers: closed Range), in -> MatchAny (or a `should` of
    matches), range -> Range; all under `must`. Qdrant matches list payloads when any element does."""
    if filter is None or not filter.conditions:
        return None
    return models.Filter(must=[_condition(c) for c in filter.conditions])


def _use_wal(client: QdrantClient, collection: str) -> None:
    """Switch local mode's SQLite file to WAL with synchronous=NORMAL (best effort, private API).

    Local mode commits every point in its own transaction; with the default rollback journal each commit
    waits for an fsync (~1-20 ms), so 2,000 points took 4-36 s here, against ~0.4 s in WAL mode. WAL keeps
    the file consistent after a crash; at worst the last writes are lost on power failure, which the
    engine's change-log replay restores.
    """
    try:
        connection = client._client.collections[collection].storage.storage  # type: ignore[attr-defined]
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    except (AttributeError, KeyError, TypeError, sqlite3.Error) as e:
        logger.debug("qdrant local mode: could not switch %s to WAL (%s); writes stay slow", collection, e)


class QdrantIndex:
    """A Qdrant collection of string ids, vectors and payloads.

    Args:
        dim: vector dimension.
        options: a QdrantOptions; keyword `fields` (path=..., url=..., collection=...) override it.
    """

    def __init__(self, dim: int, options: QdrantOptions | None = None, **fields: Any) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidInputError(f"dim={dim!r}: expected a positive integer")
        self.dim = dim
        self.options = resolve_options(QdrantOptions, options, fields)
        self.collection = self.options.collection
        self._local = self.options.url is None
        self._client: QdrantClient | None = self._connect()
        self._ensure_collection()
        if self.options.path is not None:
            _use_wal(self._client, self.collection)
        logger.info("qdrant collection %s: %d points, dim %d", self._where, self.count(), dim)

    @property
    def _where(self) -> str:
        place = self.options.url or self.options.path or ":memory:"
        return f"{place} (collection {self.collection!r})"

    def _connect(self) -> QdrantClient:
        if self.options.url is not None:
            return QdrantClient(url=self.options.url, api_key=self.options.api_key)
        if self.options.path is not None:
            return QdrantClient(path=self.options.path)
        return QdrantClient(location=":memory:")

    def _open_client(self) -> QdrantClient:
        if self._client is None:
            raise IndexerError(f"qdrant index {self._where} is closed: create it again")
        return self._client

    def _ensure_collection(self) -> None:
        client = self._open_client()
        if client.collection_exists(self.collection):
            vectors = client.get_collection(self.collection).config.params.vectors
            size = getattr(vectors, "size", None)
            if size != self.dim:
                raise DimensionMismatchError(
                    f"qdrant collection {self._where} has vectors of dim {size}, not {self.dim}: "
                    "open it with its dim or use another collection"
                )
            return
        client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(
                size=self.dim, distance=models.Distance.COSINE, on_disk=self.options.on_disk or None
            ),
        )

    # ------------------------------------------------------------------ writes
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Upsert vectors float32 (n, dim) with their ids and payloads (see `VectorIndex.add`)."""
        client = self._open_client()
        batch = as_batch(ids, vectors, payloads, self.dim, self._where)
        points = [  # a list of PointStruct: local mode takes models.Batch ~15x slower
            models.PointStruct(id=point_id(id_), vector=vector, payload={**payload, ID_FIELD: id_})
            for id_, vector, payload in zip(batch.ids, batch.vectors.tolist(), batch.payloads, strict=True)
        ]
        for start in range(0, len(points), _BATCH):
            client.upsert(self.collection, points=points[start : start + _BATCH], wait=True)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ids (unknown ones are ignored); returns how many were removed."""
        client = self._open_client()
        wanted = sorted({point_id(i) for i in check_ids(ids)})
        removed = 0
        for start in range(0, len(wanted), _SCROLL):
            found = client.retrieve(
                self.collection, ids=wanted[start : start + _SCROLL], with_payload=False, with_vectors=False
            )
            existing = [record.id for record in found]
            if existing:
                client.delete(
                    self.collection, points_selector=models.PointIdsList(points=existing), wait=True
                )
            removed += len(existing)
        return removed

    # ------------------------------------------------------------------ reads
    def search(
        self, vectors: np.ndarray, k: int, filter: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ids object (n_queries, k) and cosine scores float32 (n_queries, k), padded with ""/-inf."""
        client = self._open_client()
        queries, k = check_search(vectors, k, filter, self.dim, self._where)
        if queries.shape[0] == 0:
            return empty_results(0, k)
        native = to_qdrant_filter(filter)
        params = None
        if self.options.hnsw_ef and not self._local:  # local mode is exact and warns about params
            params = models.SearchParams(hnsw_ef=max(self.options.hnsw_ef, k))
        requests = [
            models.QueryRequest(query=q, filter=native, limit=k, params=params, with_payload=[ID_FIELD])
            for q in queries.tolist()
        ]
        responses = client.query_batch_points(self.collection, requests=requests)
        rows = [[(p.payload[ID_FIELD], p.score) for p in response.points] for response in responses]
        return pack_results(rows, k)

    def count(self) -> int:
        """Number of points (exact count)."""
        return self._open_client().count(self.collection, exact=True).count

    def ids(self) -> set[str]:
        """Every stored id (scrolls the whole collection)."""
        client = self._open_client()
        found: set[str] = set()
        offset = None
        while True:
            records, offset = client.scroll(
                self.collection, limit=_SCROLL, offset=offset, with_payload=[ID_FIELD], with_vectors=False
            )
            found.update(record.payload[ID_FIELD] for record in records)
            if offset is None:
                return found

    # ------------------------------------------------------------------ lifecycle
    def save(self) -> None:
        """A no-op: local mode and servers persist every write when it is made."""
        self._open_client()

    def close(self) -> None:
        """Close the client (releasing the local-mode folder lock)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"QdrantIndex(dim={self.dim}, where={self._where!r})"
