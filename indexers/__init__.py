"""Vector indexes (faiss, qdrant, milvus) behind one protocol and one filter language, plus BM25.

`import indexers` imports none of faiss, qdrant_client, pymilvus or bm25s: `create(name, ...)` imports the
backend it needs and `indexers.BM25Index` imports bm25s on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from indexers.base import VectorIndex
from indexers.errors import (
    BackendUnavailableError,
    CorruptIndexError,
    DimensionMismatchError,
    FilterError,
    IndexerError,
    InvalidInputError,
    OptionsError,
    StorageError,
    UnknownBackendError,
)
from indexers.filters import Condition, Filter, Range, parse_filters
from indexers.options import FaissOptions, MilvusOptions, QdrantOptions
from indexers.registry import create, names

if TYPE_CHECKING:
    from indexers.keyword import BM25Index

__all__ = [
    "BM25Index",
    "BackendUnavailableError",
    "Condition",
    "DimensionMismatchError",
    "FaissOptions",
    "Filter",
    "FilterError",
    "IndexerError",
    "InvalidInputError",
    "MilvusOptions",
    "OptionsError",
    "QdrantOptions",
    "Range",
    "CorruptIndexError",
    "StorageError",
    "UnknownBackendError",
    "VectorIndex",
    "create",
    "names",
    "parse_filters",
]


def __getattr__(name: str) -> Any:
    """Import `BM25Index` (and so bm25s) only when it is first used."""
    if name == "BM25Index":
        from indexers.keyword import BM25Index

        return BM25Index
    raise AttributeError(f"module 'indexers' has no attribute {name!r}")
