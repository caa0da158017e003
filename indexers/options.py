"""Per-backend options as plain dataclasses (imports nothing heavy; engine settings embed them).

Backends take either an options object or the same fields as keyword arguments:
`create("faiss", dim=384, kind="hnsw", path=dir)` == `create("faiss", dim=384, path=dir,
options=FaissOptions(kind="hnsw"))`; keyword arguments override the object's fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from indexers.errors import OptionsError

FaissKind = Literal["flat", "hnsw", "ivfflat", "ivfpq"]
GpuUse = Literal["auto", "never", "always"]
MilvusIndexType = Literal["FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"]

FAISS_KINDS = ("flat", "hnsw", "ivfflat", "ivfpq")
GPU_USES = ("auto", "never", "always")
MILVUS_INDEX_TYPES = ("FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX")

OptionsT = TypeVar("OptionsT")


def _check_choice(owner: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionsError(f"{owner}.{name}={value!r}: choose one of {list(choices)}")


def _check_positive(owner: str, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise OptionsError(f"{owner}.{name}={value!r}: expected a positive integer (or None for auto)")


@dataclass(frozen=True)
class FaissOptions:
    """Options of the in-process FAISS backend.

    Attributes:
        kind: "flat" (exact), "hnsw" (graph), "ivfflat" or "ivfpq" (inverted lists, PQ-compressed codes).
        hnsw_m: HNSW links per node. ef_construction: HNSW build beam width.
        ef_search: HNSW search beam width (per search; `FaissIndex.set_search_params(ef_search=...)`).
        nlist: IVF lists; None = auto, round(4 * sqrt(n_train)). Either way shrunk to n_train // 39
            (faiss k-means wants >= 39 points per centroid), at least 1.
        nprobe: IVF lists visited per search (per search, like ef_search).
        pq_m: PQ sub-quantizers (must divide dim); None = auto, the largest divisor of dim <= dim // 8
            (8 dimensions per byte-sized code: 64 bytes for dim 512).
        pq_nbits: bits per PQ code; training needs >= 2**pq_nbits vectors.
        min_train: IVF kinds serve from an exact flat index until they hold this many vectors
            (raised to 2**pq_nbits for ivfpq); the add that reaches it trains on everything held.
        exact_below: filtered searches that keep at most this many vectors are answered exactly, and any
            HNSW/IVF query row that comes back with fewer than k hits while more exist is redone exactly.
        compact_ratio: HNSW cannot remove vectors; deleted ones stay as tombstones (never returned) and the
            graph is rebuilt when tombstones exceed this fraction of the vectors it holds.
        use_gpu: "auto" searches a GPU copy when faiss sees a GPU (flat/IVF kinds), "never", or "always"
            (fails without a GPU). Filtered searches stay on the CPU (GPU indexes take no id selector).
    """

    kind: FaissKind = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 64
    nlist: int | None = None
    nprobe: int = 16
    pq_m: int | None = None
    pq_nbits: int = 8
    min_train: int = 1000
    exact_below: int = 2048
    compact_ratio: float = 0.25
    use_gpu: GpuUse = "auto"

    def __post_init__(self) -> None:
        _check_choice("FaissOptions", "kind", self.kind, FAISS_KINDS)
        _check_choice("FaissOptions", "use_gpu", self.use_gpu, GPU_USES)
        _check_positive(
            "FaissOptions",
            {
                "hnsw_m": self.hnsw_m,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
                "nlist": self.nlist,
                "nprobe": self.nprobe,
                "pq_m": self.pq_m,
                "pq_nbits": self.pq_nbits,
                "min_train": self.min_train,
                "exact_below": self.exact_below,
            },
        )
        if not 0.0 < self.compact_ratio <= 1.0:
            raise OptionsError(f"FaissOptions.compact_ratio={self.compact_ratio!r}: expected 0 < ratio <= 1")


@dataclass(frozen=True)
class QdrantOptions:
    """Options of the Qdrant backend: `path` (embedded local mode), `url` (a server), or neither (in memory).

    Attributes:
        path: folder of an embedded (local mode) store; exact brute-force search.
        url: a Qdrant server, e.g. "http://localhost:6333"; api_key its key.
        collection: collection name. on_disk: keep vectors on disk (server).
        hnsw_ef: HNSW beam width per search on a server (local mode is exact and ignores it).
    """

    path: str | None = None
    url: str | None = None
    api_key: str | None = None
    collection: str = "medsearch"
    on_disk: bool = False
    hnsw_ef: int | None = None

    def __post_init__(self) -> None:
        if self.path is not None and self.url is not None:
            raise OptionsError(
                f"QdrantOptions got both path={self.path!r} (embedded) and url={self.url!r} (server): give one"
            )
        if self.path is not None:
            object.__setattr__(self, "path", str(self.path))
        if not self.collection:
            raise OptionsError("QdrantOptions.collection is empty: give a collection name")
        _check_positive("QdrantOptions", {"hnsw_ef": self.hnsw_ef})


@dataclass(frozen=True)
class MilvusOptions:
    """Options of the Milvus backend: `uri` is a Milvus Lite file ("x.db") or a server ("http://host:19530").

    Attributes:
        uri: required. token: server credentials ("user:password" or an API key).
        collection: collection name. index_type: vector index built on the server (Milvus Lite accepts these).
        hnsw_m, ef_construction, ef_search: HNSW parameters. nlist, nprobe: IVF_FLAT parameters.
    """

    uri: str | None = None
    token: str | None = None
    collection: str = "medsearch"
    index_type: MilvusIndexType = "AUTOINDEX"
    hnsw_m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    nlist: int = 1024
    nprobe: int = 16

    def __post_init__(self) -> None:
        if self.uri is not None:
            object.__setattr__(self, "uri", str(self.uri))
        _check_choice("MilvusOptions", "index_type", self.index_type, MILVUS_INDEX_TYPES)
        _check_positive(
            "MilvusOptions",
            {
                "hnsw_m": self.hnsw_m,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
                "nlist": self.nlist,
                "nprobe": self.nprobe,
            },
        )
        if not self.collection or not self.collection.replace("_", "a").isalnum():
            raise OptionsError(f"MilvusOptions.collection={self.collection!r}: use letters, digits and '_'")


def resolve_options(cls: type[OptionsT], options: OptionsT | None, fields: dict[str, Any]) -> OptionsT:
    """Merge an options object (or the defaults) with keyword fields, which win.

    Raises:
        OptionsError: on a keyword that is not a field of `cls` (the message lists the valid ones).
    """
    if options is not None and not isinstance(options, cls):
        raise OptionsError(f"options must be a {cls.__name__}, got {type(options).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(fields) - known)
    if unknown:
        raise OptionsError(f"unknown {cls.__name__} option(s) {unknown}; valid: {sorted(known)}")
    base = options if options is not None else cls()
    return dataclasses.replace(base, **fields) if fields else base  # type: ignore[type-var]
