"""FAISS building blocks for `FaissIndex`: index construction and training rules, search parameters, the
GPU decision, and exact search over a stored subset (the fallback that keeps filtered searches at k hits).
"""

from __future__ import annotations

import logging
import math

import faiss
import numpy as np

from indexers.errors import BackendUnavailableError, OptionsError
from indexers.options import FaissOptions

logger = logging.getLogger(__name__)

IVF_KINDS = ("ivfflat", "ivfpq")
POINTS_PER_CENTROID = 39  # faiss k-means warns below this many training points per centroid
_EXACT_CHUNK = 65536  # stored vectors scored per matrix product in exact_search


def gpu_count() -> int:
    """GPUs faiss can use (0 for the CPU build, which has no get_num_gpus)."""
    counter = getattr(faiss, "get_num_gpus", None)
    return int(counter()) if counter is not None else 0


def decide_gpu(use_gpu: str, kind: str, num_gpus: int) -> bool:
    """Whether searches run on a GPU copy of the index.

    Args:
        use_gpu: "auto" (a GPU when one is visible), "never" or "always".
        kind: the faiss kind; faiss has no GPU HNSW, so "hnsw" stays on the CPU under "auto".
        num_gpus: GPUs visible to faiss (`gpu_count()`).

    Raises:
        OptionsError: "always" with kind "hnsw".
        BackendUnavailableError: "always" with no visible GPU.
    """
    if use_gpu == "never":
        return False
    if kind == "hnsw":
        if use_gpu == "always":
            raise OptionsError(
                "use_gpu='always' with kind='hnsw': faiss has no GPU HNSW; use flat/ivf* or 'auto'"
            )
        return False
    if num_gpus > 0:
        return True
    if use_gpu == "always":
        raise BackendUnavailableError(
            "use_gpu='always' but faiss sees no GPU: pip install 'medsearch[gpu]' (faiss-gpu) and check "
            "CUDA_VISIBLE_DEVICES, or use use_gpu='auto'"
        )
    return False


def to_gpu(index: faiss.Index) -> faiss.Index:
    """A copy of `index` spread over every visible GPU."""
    return faiss.index_cpu_to_all_gpus(index)


def auto_nlist(n_train: int, nlist: int | None) -> int:
    """IVF lists: `nlist` or round(4 * sqrt(n_train)), shrunk to n_train // 39, at least 1."""
    wanted = nlist if nlist else round(4 * math.sqrt(n_train))
    return max(1, min(wanted, n_train // POINTS_PER_CENTROID))


def auto_pq_m(dim: int, pq_m: int | None) -> int:
    """PQ sub-quantizers: `pq_m` (must divide dim) or the largest divisor of dim <= dim // 8."""
    if pq_m is not None:
        if dim % pq_m:
            raise OptionsError(
                f"pq_m={pq_m} does not divide dim {dim}: pick a divisor of {dim} or None (auto)"
            )
        return pq_m
    limit = max(1, dim // 8)
    return max(m for m in range(1, limit + 1) if dim % m == 0)


def train_threshold(options: FaissOptions) -> int:
    """Vectors an IVF kind holds (exactly, in a flat index) before it trains."""
    needed = 2**options.pq_nbits if options.kind == "ivfpq" else 1
    return max(options.min_train, needed)


def new_flat(dim: int) -> faiss.Index:
    """Exact inner-product index keyed by int64 ids (also the staging index of untrained IVF kinds)."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def new_hnsw(dim: int, options: FaissOptions) -> faiss.Index:
    """HNSW graph over flat storage, keyed by int64 ids."""
    graph = faiss.IndexHNSWFlat(dim, options.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = options.ef_construction
    graph.hnsw.efSearch = options.ef_search
    return faiss.IndexIDMap2(graph)


def empty_index(dim: int, options: FaissOptions) -> faiss.Index:
    """The index a new FaissIndex starts with (IVF kinds start as flat until `train_threshold`)."""
    return new_hnsw(dim, options) if options.kind == "hnsw" else new_flat(dim)


def new_ivf(dim: int, options: FaissOptions, training: np.ndarray) -> faiss.Index:
    """An IVF index of `options.kind` trained on `training` float32 (n, dim) (not added)."""
    n_train = training.shape[0]
    nlist = auto_nlist(n_train, options.nlist)
    quantizer = faiss.IndexFlatIP(dim)
    if options.kind == "ivfflat":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        pq_m = auto_pq_m(dim, options.pq_m)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, options.pq_nbits, faiss.METRIC_INNER_PRODUCT)
        recommended = POINTS_PER_CENTROID * 2**options.pq_nbits
        if n_train < recommended:  # say it through logging rather than faiss' own stderr line
            logger.warning(
                "ivfpq codebooks trained on %d vectors (faiss advises >= %d)", n_train, recommended
            )
            index.pq.cp.min_points_per_centroid = 1
    index.train(training)
    index.nprobe = min(options.nprobe, nlist)
    logger.info("trained faiss %s on %d vectors (nlist=%d)", options.kind, n_train, nlist)
    return index


def is_ivf(index: faiss.Index) -> bool:
    """True for a trained IVF index (not the flat staging index of an untrained IVF kind)."""
    return isinstance(index, faiss.IndexIVF)


def search_parameters(
    index: faiss.Index,
    options: FaissOptions,
    k: int,
    selector: faiss.IDSelector | None,
    exhaustive: bool = False,
) -> faiss.SearchParameters | None:
    """Per-search parameters: efSearch (HNSW) or nprobe (IVF; all lists when `exhaustive`) and the selector."""
    if is_ivf(index):
        nprobe = index.nlist if exhaustive else min(options.nprobe, index.nlist)
        return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if isinstance(inner, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=max(options.ef_search, k))
    return faiss.SearchParameters(sel=selector) if selector is not None else None


def bitmap_selector(mask: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray]:
    """An id selector for keys where `mask` (bool (n_keys,)) is True, and the bitmap it reads.

    Keep the returned bitmap referenced until the search is over: faiss reads it through a raw pointer.
    """
    bitmap = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(mask.shape[0], faiss.swig_ptr(bitmap)), bitmap


def stored_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(keys int64 (n,), vectors float32 (n, dim)) held by an IndexIDMap2 over a flat or HNSW-flat index.

    The vectors are a view of faiss memory: use them before the index changes.
    """
    inner = faiss.downcast_index(index.index)
    flat = faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSW) else inner
    n, dim = flat.ntotal, flat.d
    keys = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    if n == 0:
        return keys, np.zeros((0, dim), dtype=np.float32)
    vectors = faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim)
    return keys, vectors


def exact_search(
    queries: np.ndarray, vectors: np.ndarray, keys: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of queries float32 (q, dim) over vectors float32 (n, dim) labelled keys (n,).

    Returns:
        distances float32 (q, k) descending, padded with -inf; labels int64 (q, k), padded with -1.
    """
    n_queries = queries.shape[0]
    best_scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    best_labels = np.full((n_queries, k), -1, dtype=np.int64)
    for start in range(0, vectors.shape[0], _EXACT_CHUNK):
        scores = queries @ vectors[start : start + _EXACT_CHUNK].T
        labels = np.broadcast_to(keys[start : start + _EXACT_CHUNK], scores.shape)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_labels = np.concatenate([best_labels, labels], axis=1)
        top = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(merged_scores, top, axis=1)
        order = np.take_along_axis(top, np.argsort(-top_scores, axis=1, kind="stable"), axis=1)
        best_scores = np.take_along_axis(merged_scores, order, axis=1)
        best_labels = np.take_along_axis(merged_labels, order, axis=1)
    return best_scores.astype(np.float32, copy=False), best_labels
