"""Input checks and result packing shared by every backend, so they all fail and pad the same way."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexers.errors import DimensionMismatchError, FilterError, InvalidInputError
from indexers.filters import Filter, check_field_name

logger = logging.getLogger(__name__)

MAX_ID_LENGTH = 512  # Milvus VARCHAR primary key; applied to every backend so ids move freely between them


@dataclass(frozen=True)
class Batch:
    """A validated add(): unique ids (last occurrence wins), normalised float32 (n, dim) rows, payloads."""

    ids: list[str]
    vectors: np.ndarray
    payloads: list[dict[str, Any]]


def check_k(k: object) -> int:
    """Return k as an int >= 1, else raise InvalidInputError."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"k={k!r}: expected an integer >= 1")
    return int(k)


def as_vectors(vectors: object, dim: int, where: str, allow_single: bool = False) -> np.ndarray:
    """Check and L2-normalise vectors.

    Args:
        vectors: array-like (n, dim) (or (dim,) when `allow_single`).
        dim: the index dimension.
        where: the index location, for error messages.
        allow_single: accept one (dim,) vector as (1, dim).

    Returns:
        float32 C-contiguous (n, dim), rows scaled to unit length (all-zero rows stay zero).

    Raises:
        DimensionMismatchError: wrong shape, naming got/expected and `where`.
        InvalidInputError: NaN or infinite values.
    """
    array = np.asarray(vectors, dtype=np.float32)
    if allow_single and array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        got = array.shape[1] if array.ndim == 2 else f"shape {array.shape}"
        raise DimensionMismatchError(
            f"vector dim {got} != index dim {dim} for index at {where}: pass float32 (n, {dim})"
        )
    if not np.isfinite(array).all():
        raise InvalidInputError(f"vectors for index at {where} contain NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def check_search(vectors: object, k: object, filter: object, dim: int, where: str) -> tuple[np.ndarray, int]:
    """Validate a `search` call's arguments: float32 (n_queries, dim) queries and k (a Filter or None)."""
    k = check_k(k)
    queries = as_vectors(vectors, dim, where, allow_single=True)
    if filter is not None and not isinstance(filter, Filter):
        raise InvalidInputError(f"filter must be an indexers.Filter, got {type(filter).__name__}")
    return queries, k


def check_ids(ids: object, what: str = "ids") -> list[str]:
    """Return ids as a list of non-empty strings of at most MAX_ID_LENGTH characters."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise InvalidInputError(f"{what} must be a sequence of str, got {type(ids).__name__}")
    checked = [str(i) if isinstance(i, np.str_) else i for i in ids]
    for position, value in enumerate(checked):
        if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
            raise InvalidInputError(
                f"{what}[{position}]={value!r}: expected a non-empty str of at most {MAX_ID_LENGTH} characters"
            )
    return checked


def check_payload(payload: object, position: int) -> dict[str, Any]:
    """Validate one payload; None values are dropped (treated as a missing field).

    Raises:
        InvalidInputError: a bad key (see `filters.check_field_name`) or a value that is not a str, int,
            finite float, bool or list of str.
    """
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise InvalidInputError(f"payloads[{position}] must be a mapping, got {type(payload).__name__}")
    clean: dict[str, Any] = {}
    for key, value in payload.items():
        try:
            check_field_name(key)
        except FilterError as e:
            raise InvalidInputError(f"payloads[{position}]: {e}") from e
        if value is None:
            continue
        clean[key] = _check_payload_value(value, key, position)
    return clean


def _check_payload_value(value: object, key: str, position: int) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and np.isfinite(value):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidInputError(
        f"payloads[{position}][{key!r}]={value!r}: values must be str, int, finite float, bool or a list of str"
    )


def as_batch(
    ids: Sequence[str], vectors: object, payloads: Sequence[Mapping[str, Any]] | None, dim: int, where: str
) -> Batch:
    """Validate an add() call and keep the last occurrence of each repeated id."""
    checked_ids = check_ids(ids)
    array = as_vectors(vectors, dim, where)
    if array.shape[0] != len(checked_ids):
        raise InvalidInputError(f"{len(checked_ids)} ids but {array.shape[0]} vectors for index at {where}")
    if payloads is None:
        clean = [{} for _ in checked_ids]
    else:
        if len(payloads) != len(checked_ids):
            raise InvalidInputError(
                f"{len(checked_ids)} ids but {len(payloads)} payloads for index at {where}"
            )
        clean = [check_payload(p, i) for i, p in enumerate(payloads)]
    last = {value: position for position, value in enumerate(checked_ids)}
    if len(last) < len(checked_ids):
        logger.debug("add(): %d repeated ids in one batch, keeping the last", len(checked_ids) - len(last))
        keep = sorted(last.values())
        return Batch([checked_ids[i] for i in keep], array[keep], [clean[i] for i in keep])
    return Batch(checked_ids, array, clean)


def empty_results(n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """ids object (n_queries, k) of "" and scores float32 (n_queries, k) of -inf."""
    ids = np.full((n_queries, k), "", dtype=object)
    return ids, np.full((n_queries, k), -np.inf, dtype=np.float32)


def pack_results(rows: Sequence[Sequence[tuple[str, float]]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pack per-query [(id, score), ...] lists (best first) into padded (n_queries, k) arrays."""
    ids, scores = empty_results(len(rows), k)
    for row, hits in enumerate(rows):
        for column, (hit_id, score) in enumerate(hits[:k]):
            ids[row, column] = hit_id
            scores[row, column] = score
    return ids, scores
