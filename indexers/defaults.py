"""The FAISS index a collection gets by default (`kind="auto"`), chosen by its size.

Imports nothing heavy: `visible_gpus` imports faiss only when called. The rule comes from
`benchmarks/index_bench.py` (512-d clustered vectors, 2 shared CPU cores; `benchmarks/results/index_bench.json`):

- Exact search (flat) reads every vector per query: 5 single queries/s at 100k x 512 and under 1 at 1M on
  that machine, so it stays the default only while `n * dim <= FLAT_MAX_FLOATS` (50k vectors at 512-d).
- Above that, IVF-Flat: 1M x 512 built in about 4 minutes there (k-means on 64 vectors per list, then one
  pass to assign the rest), where HNSW (M=16, efConstruction=64) took 17 minutes and reached only recall@10
  0.92 at efSearch 256 on the same clustered data. IVF-Flat also deletes for real, takes the filter's id selector and moves to a GPU (faiss has no
  GPU HNSW). nlist is the power of two nearest 2 * sqrt(n) (512 at 100k, 2048 at 1M) and nprobe = nlist / 16,
  so a query scans about 1/16 of the vectors: measured recall@10 1.0 at 67x exact single-query QPS at 100k
  (nprobe 32) and at 32x at 1M (nprobe 128). Recall was already 1.0 at nprobe 4-8 on that data, so 1/16 is
  margin for real embeddings, which cluster less cleanly; raise nprobe per search when recall matters more.
- With a GPU visible, exact search stays fast far longer: flat up to `GPU_FLAT_MAX_FLOATS` (1M at 512-d).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

AUTO = "auto"
FLAT_MAX_FLOATS = 50_000 * 512  # flat while n * dim stays within this (CPU)
GPU_FLAT_MAX_FLOATS = 1_000_000 * 512  # the same bound when faiss sees a GPU
MIN_NLIST, MAX_NLIST = 64, 65_536
NPROBE_FRACTION = 16  # nprobe = nlist // NPROBE_FRACTION
MIN_NPROBE = 8
TRAIN_PER_LIST = 64  # IVF trains (k-means) on this many vectors per list, at most n
SHAPE_FIELDS = ("kind", "nlist")  # the fields baked into a built index: a change means a rebuild


def choose_faiss_options(n: int, dim: int, gpu: bool = False) -> dict[str, Any]:
    """FaissOptions fields for an index that will hold `n` vectors of `dim` dimensions.

    Args:
        n: vectors the index will hold (a collection's vectors in that space).
        dim: their dimension.
        gpu: whether faiss sees a GPU (exact search then stays the default for longer).

    Returns:
        {"kind": "flat"} for small indexes, else {"kind": "ivfflat", "nlist", "nprobe", "min_train"}, with
        nlist the power of two nearest 2 * sqrt(n) (within [64, 65536] and at most n // 39), nprobe =
        max(8, nlist // 16) and min_train = min(n, 64 * nlist) (the vectors k-means trains on).
    """
    if n < 0 or dim < 1:
        raise ValueError(f"n={n}, dim={dim}: expected n >= 0 and dim >= 1")
    limit = GPU_FLAT_MAX_FLOATS if gpu else FLAT_MAX_FLOATS
    if n * dim <= limit:
        return {"kind": "flat"}
    return {"kind": "ivfflat", **ivf_options(n)}


def ivf_options(n: int) -> dict[str, int]:
    """IVF fields for n vectors: nlist (power of two nearest 2 * sqrt(n), within [64, 65536], at most
    n // 39), nprobe = max(8, nlist // 16) and min_train = min(n, 64 * nlist)."""
    nlist = 2 ** round(math.log2(2 * math.sqrt(max(n, 1))))
    nlist = max(1, min(max(MIN_NLIST, nlist), MAX_NLIST, n // 39))
    nprobe = min(nlist, max(MIN_NPROBE, nlist // NPROBE_FRACTION))
    return {"nlist": nlist, "nprobe": nprobe, "min_train": min(n, TRAIN_PER_LIST * nlist)}


def auto_faiss_options(
    requested: Mapping[str, Any], n: int, dim: int, built: Mapping[str, Any] | None, gpu: bool = False
) -> tuple[dict[str, Any], bool]:
    """Resolve `kind="auto"` (or no kind) in the options a user asked for; explicit settings win.

    Args:
        requested: FaissOptions fields as configured (a missing "kind" means "auto").
        n, dim: vectors the index will hold, and their dimension.
        built: the auto-chosen fields the stored index was built with (None: nothing recorded).
        gpu: whether faiss sees a GPU.

    Returns:
        (options to open the index with, rebuild): `rebuild` is True when a stored index was built with
        another kind or nlist than the size now calls for, so it must be discarded and rebuilt. Options
        with an explicit kind are returned unchanged, never rebuilt.
    """
    options = dict(requested)
    if options.get("kind", AUTO) != AUTO:
        return options, False
    chosen = choose_faiss_options(n, dim, gpu=gpu)
    options.pop("kind", None)
    resolved = {**chosen, **options}  # fields the user set explicitly (nprobe=..., ...) win
    rebuild = built is not None and any(built.get(f) != resolved.get(f) for f in SHAPE_FIELDS)
    return resolved, rebuild


def visible_gpus() -> int:
    """GPUs faiss can use (imports faiss; 0 when faiss is the CPU build or not installed)."""
    try:
        from indexers.faiss_build import gpu_count
    except ImportError:
        return 0
    return gpu_count()
