"""Test helpers for the indexers tests: seeded clustered vectors with payloads, an exact numpy oracle,
and how to open each backend from a temporary folder (imported by the test modules and conftest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import indexers
from indexers import BackendUnavailableError, Filter

DIM = 64
MODALITIES = ("CT", "MR", "XR", "US")
BODY_PARTS = ("chest", "head", "abdomen", "knee", "spine")
RARE_CLUSTER = 0  # the "rare" items live here; queries come from other clusters

# backend case -> (registry name, options given a folder); IVF kinds train at 256 vectors so that the
# small mutation datasets (300) exercise trained indexes too.
BACKEND_CASES: dict[str, tuple[str, Callable[[Path], dict[str, Any]]]] = {
    "faiss-flat": ("faiss", lambda folder: {"kind": "flat", "path": str(folder / "faiss")}),
    "faiss-hnsw": ("faiss", lambda folder: {"kind": "hnsw", "path": str(folder / "faiss")}),
    "faiss-ivfflat": (
        "faiss",
        lambda folder: {"kind": "ivfflat", "min_train": 256, "path": str(folder / "faiss")},
    ),
    "faiss-ivfpq": (
        "faiss",
        lambda folder: {"kind": "ivfpq", "min_train": 256, "path": str(folder / "faiss")},
    ),
    "qdrant": ("qdrant", lambda folder: {"path": str(folder / "qdrant")}),
    "milvus": ("milvus", lambda folder: {"uri": str(folder / "milvus.db")}),
}

# Minimum recall@10 against exact search; exact backends must agree with numpy.
RECALL = {
    "faiss-flat": 0.99,
    "faiss-hnsw": 0.95,
    "faiss-ivfflat": 0.85,
    "faiss-ivfpq": 0.35,  # 8-byte codes for 64 dims; measured 0.47
    "qdrant": 0.99,
    "milvus": 0.99,
}


@dataclass
class Dataset:
    """ids (n,), vectors float32 (n, dim) L2-normalised, payloads, queries float32 (q, dim), cluster of each id."""

    ids: list[str]
    vectors: np.ndarray
    payloads: list[dict[str, Any]]
    queries: np.ndarray
    clusters: np.ndarray


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_dataset(n: int, n_queries: int, seed: int, n_clusters: int = 20, rare: int = 15) -> Dataset:
    """Gaussian clusters (like faiss' SyntheticDataset, structured rather than uniform noise).

    Payload fields: modality (str), body_part (str), age (int), score (float), flag (bool),
    labels (list of str), and group="rare" on `rare` items of cluster RARE_CLUSTER; "three" on 3 items.
    Queries are fresh draws from clusters other than RARE_CLUSTER.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, DIM)).astype(np.float32)
    clusters = rng.integers(0, n_clusters, size=n)
    vectors = _normalise(centres[clusters] + 0.6 * rng.standard_normal((n, DIM)))
    query_clusters = rng.integers(1, n_clusters, size=n_queries)
    queries = _normalise(centres[query_clusters] + 0.6 * rng.standard_normal((n_queries, DIM)))
    rare_members = set(np.flatnonzero(clusters == RARE_CLUSTER)[:rare].tolist())
    payloads = []
    for i in range(n):
        payload: dict[str, Any] = {
            "modality": MODALITIES[i % 4],
            "body_part": BODY_PARTS[(i // 4) % 5],
            "age": (i * 7) % 90,
            "score": round((i % 10) / 10 + 0.05, 2),
            "flag": i % 2 == 0,
            "labels": [f"l{i % 3}", f"m{i % 5}"],
        }
        if i in rare_members:
            payload["group"] = "rare"
        if i in (11, 22, 33):
            payload["tag"] = "three"
        payloads.append(payload)
    return Dataset([f"doc-{i}" for i in range(n)], vectors, payloads, queries, clusters)


def exact_search(data: Dataset, queries: np.ndarray, k: int, filter: Filter | None = None) -> list[list[str]]:
    """The exact top-k ids per query among items matching `filter` (numpy, inner product)."""
    keep = np.array([filter is None or filter.matches(p) for p in data.payloads])
    candidates = np.flatnonzero(keep)
    scores = queries @ data.vectors[candidates].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[data.ids[candidates[j]] for j in row] for row in order]


def recall(found: np.ndarray, expected: list[list[str]]) -> float:
    """Mean fraction of each expected row found in the same row of `found` (object (q, k))."""
    hits = [
        len(set(row) & set(want)) / max(len(want), 1)
        for row, want in zip(found.tolist(), expected, strict=True)
    ]
    return float(np.mean(hits))


def open_backend(case: str, folder: Path) -> indexers.VectorIndex:
    """Open backend `case` in `folder`; skip the test when its library is missing."""
    name, options = BACKEND_CASES[case]
    try:
        return indexers.create(name, dim=DIM, **options(folder))
    except BackendUnavailableError as e:
        pytest.skip(str(e))
