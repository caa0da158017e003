"""`MilvusIndex`: Milvus Lite (`uri="x.db"`, a local file) or a Milvus server (`uri="http://host:19530"`).

Schema: `_id` VARCHAR primary key, `_vector` FLOAT_VECTOR, metric IP on L2-normalised vectors, payload
fields as dynamic fields (stored as they are: list fields stay JSON arrays). Filters become boolean
expressions; string literals are JSON-escaped and field names were validated (letters, digits, '_'),
so no user input can change an expression's structure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from indexers.errors import DimensionMismatchError, IndexerError, InvalidInputError, OptionsError
from indexers.filters import Condition, Filter
from indexers.options import MilvusOptions, resolve_options
from indexers.validation import (
    MAX_ID_LENGTH,
    as_batch,
    check_ids,
    check_search,
    empty_results,
    pack_results,
)

logger = logging.getLogger(__name__)

ID_FIELD = "_id"
VECTOR_FIELD = "_vector"
_BATCH = 1000
_QUERY_BATCH = 1000


def _literal(value: Any) -> str:
    """A Milvus expression literal: JSON strings (escaped), true/false, repr of numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _equals(field: str, value: Any) -> str:
    if isinstance(value, str):  # a list field matches when it contains the value
        return f"({field} == {_literal(value)} or json_contains({field}, {_literal(value)}))"
    return f"{field} == {_literal(value)}"


def _expression(condition: Condition) -> str:
    field = condition.field
    if condition.op == "eq":
        return _equals(field, condition.value)
    if condition.op == "in":  # `field in [...]` fails on rows where the field is a list: spell it out
        parts = [_equals(field, v) for v in condition.value]
        strings = [v for v in condition.value if isinstance(v, str)]
        if strings:
            parts.append(f"json_contains_any({field}, [{', '.join(_literal(v) for v in strings)}])")
        return "(" + " or ".join(parts) + ")"
    operators = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
    bounds = [f"{field} {operators[key]} {_literal(v)}" for key, v in condition.value.as_dict().items()]
    return "(" + " and ".join(bounds) + ")"


def to_milvus_expression(filter: Filter | None) -> str:
    """Translate a Filter to a Milvus boolean expression ("" for no filter), e.g.
    `(modality == "CT" or json_contains(modality, "CT")) and (age >= 30 and age < 60)`."""
    if filter is None or not filter.conditions:
        return ""
    return " and ".join(_expression(c) for c in filter.conditions)


class MilvusIndex:
    """A Milvus collection of string ids, vectors and payloads.

    Args:
        dim: vector dimension.
        options: a MilvusOptions; keyword `fields` (uri=..., collection=..., index_type=...) override it.
    """

    def __init__(self, dim: int, options: MilvusOptions | None = None, **fields: Any) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidInputError(f"dim={dim!r}: expected a positive integer")
        self.dim = dim
        self.options = resolve_options(MilvusOptions, options, fields)
        if not self.options.uri:
            raise OptionsError(
                "milvus needs uri=: a Milvus Lite file such as 'index.db', or 'http://host:19530'"
            )
        self.collection = self.options.collection
        self._client: MilvusClient | None = MilvusClient(uri=self.options.uri, token=self.options.token or "")
        self._ensure_collection()
        logger.info("milvus collection %s: %d rows, dim %d", self._where, self.count(), dim)

    @property
    def _where(self) -> str:
        return f"{self.options.uri} (collection {self.collection!r})"

    def _open_client(self) -> MilvusClient:
        if self._client is None:
            raise IndexerError(f"milvus index {self._where} is closed: create it again")
        return self._client

    def _ensure_collection(self) -> None:
        client = self._open_client()
        if client.has_collection(self.collection):
            fields = client.describe_collection(self.collection)["fields"]
            vector = next((f for f in fields if f["name"] == VECTOR_FIELD), None)
            size = int(vector["params"]["dim"]) if vector else None
            if size != self.dim:
                raise DimensionMismatchError(
                    f"milvus collection {self._where} has vectors of dim {size}, not {self.dim}: "
                    "open it with its dim or use another collection"
                )
        else:
            self._create_collection(client)
        client.load_collection(self.collection)  # a reopened collection starts released

    def _create_collection(self, client: MilvusClient) -> None:
        schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=self.dim)
        index_params = client.prepare_index_params()
        index_params.add_index(
            field_name=VECTOR_FIELD,
            index_type=self.options.index_type,
            metric_type="IP",
            params=self._build_params(),
        )
        client.create_collection(
            self.collection, schema=schema, index_params=index_params, consistency_level="Strong"
        )

    def _build_params(self) -> dict[str, Any]:
        if self.options.index_type == "HNSW":
            return {"M": self.options.hnsw_m, "efConstruction": self.options.ef_construction}
        if self.options.index_type == "IVF_FLAT":
            return {"nlist": self.options.nlist}
        return {}

    def _search_params(self, k: int) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.options.index_type == "HNSW":
            params = {"ef": max(self.options.ef_search, k)}
        elif self.options.index_type == "IVF_FLAT":
            params = {"nprobe": self.options.nprobe}
        return {"metric_type": "IP", "params": params}

    # ------------------------------------------------------------------ writes
    def add(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Upsert vectors float32 (n, dim) with their ids and payloads (see `VectorIndex.add`)."""
        client = self._open_client()
        batch = as_batch(ids, vectors, payloads, self.dim, self._where)
        for start in range(0, len(batch.ids), _BATCH):
            rows = [
                {**payload, ID_FIELD: id_, VECTOR_FIELD: vector}
                for id_, vector, payload in zip(
                    batch.ids[start : start + _BATCH],
                    batch.vectors[start : start + _BATCH].tolist(),
                    batch.payloads[start : start + _BATCH],
                    strict=True,
                )
            ]
            client.upsert(self.collection, rows)

    def delete(self, ids: Sequence[str]) -> int:
        """Remove ids (unknown ones are ignored); returns how many were removed."""
        client = self._open_client()
        wanted = sorted(set(check_ids(ids)))
        removed = 0
        for start in range(0, len(wanted), _QUERY_BATCH):
            chunk = wanted[start : start + _QUERY_BATCH]
            existing = [
                row[ID_FIELD] for row in client.query(self.collection, ids=chunk, output_fields=[ID_FIELD])
            ]
            if existing:
                client.delete(self.collection, ids=existing)
            removed += len(existing)
        return removed

    # ------------------------------------------------------------------ reads
    def search(
        self, vectors: np.ndarray, k: int, filter: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ids object (n_queries, k) and scores float32 (n_queries, k), padded with ""/-inf."""
        client = self._open_client()
        queries, k = check_search(vectors, k, filter, self.dim, self._where)
        if queries.shape[0] == 0:
            return empty_results(0, k)
        results = client.search(
            self.collection,
            data=queries.tolist(),
            limit=k,
            filter=to_milvus_expression(filter),
            output_fields=[ID_FIELD],
            search_params=self._search_params(k),
            anns_field=VECTOR_FIELD,
        )
        rows = [[(hit.id, float(hit.distance)) for hit in hits] for hits in results]
        return pack_results(rows, k)

    def count(self) -> int:
        """Number of rows."""
        result = self._open_client().query(self.collection, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def ids(self) -> set[str]:
        """Every stored id (iterates the whole collection)."""
        iterator = self._open_client().query_iterator(
            self.collection, batch_size=_QUERY_BATCH, output_fields=[ID_FIELD]
        )
        found: set[str] = set()
        try:
            while batch := iterator.next():
                found.update(row[ID_FIELD] for row in batch)
        finally:
            iterator.close()
        return found

    # ------------------------------------------------------------------ lifecycle
    def save(self) -> None:
        """Flush buffered writes to storage (Milvus Lite: the .db file); servers persist on their own."""
        self._open_client().flush(self.collection)

    def close(self) -> None:
        """Close the client connection."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"MilvusIndex(dim={self.dim}, where={self._where!r})"
