"""The `VectorIndex` protocol every vector backend implements (faiss, qdrant, milvus, plug-ins)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from indexers.filters import Filter


@runtime_checkable
class VectorIndex(Protocol):
    """A store of (string id, vector, payload) searched by inner product on L2-normalised vectors.

    Vectors are float32 (n, dim); backends L2-normalise them, so scores are cosine similarities
    (higher = closer). Payload values are str, int, float, bool or lists of str (None values are dropped).
    """

    dim: int

    def add(
        self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Upsert: an existing id gets the new vector and payload (replaying a batch is idempotent).

        Args:
            ids: n non-empty strings; within one batch the last occurrence of an id wins.
            vectors: float32 (n, dim).
            payloads: n mappings (or None: empty payloads).

        Raises:
            DimensionMismatchError: vectors are not (n, dim).
            InvalidInputError: bad ids or payloads.
        """
        ...

    def search(
        self, vectors: np.ndarray, k: int, filter: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest stored vectors per query that satisfy `filter`.

        Args:
            vectors: float32 (n_queries, dim) (a single (dim,) vector is taken as one query).
            k: hits per query, >= 1.
            filter: payload conditions; k hits come back whenever k matching vectors exist.

        Returns:
            ids: object ndarray (n_queries, k) of str, padded with "" when fewer than k exist.
            scores: float32 (n_queries, k), descending, padded with -inf.
        """
        ...

    def delete(self, ids: Sequence[str]) -> int:
        """Remove these ids (unknown ones are ignored); return how many were actually removed."""
        ...

    def count(self) -> int:
        """Number of live vectors."""
        ...

    def ids(self) -> set[str]:
        """Every live id (for consistency checks against the source of truth)."""
        ...

    def save(self) -> None:
        """Persist atomically (write to a temporary file, then os.replace); a no-op for a server."""
        ...

    def close(self) -> None:
        """Release files, clients and memory; the object is unusable afterwards."""
        ...
