"""Vector index backends by name: `create("faiss" | "qdrant" | "milvus" | "module:Class", dim, **options)`.

Importing this module imports no backend library: the backend module is imported by `create`.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from indexers.base import VectorIndex
from indexers.errors import BackendUnavailableError, UnknownBackendError

logger = logging.getLogger(__name__)

# name -> ("module:Class", pip extra of medsearch that installs the library)
_BACKENDS: dict[str, tuple[str, str]] = {
    "faiss": ("indexers.faiss_index:FaissIndex", "faiss"),
    "qdrant": ("indexers.qdrant_index:QdrantIndex", "qdrant"),
    "milvus": ("indexers.milvus_index:MilvusIndex", "milvus"),
}


def names() -> list[str]:
    """Registered backend names, sorted."""
    return sorted(_BACKENDS)


def backend_class(name: str) -> type:
    """The class behind `name` (a registered name or "package.module:Class"), importing its module.

    Raises:
        UnknownBackendError: not a registered name, nor a "module:Class" that exists.
        BackendUnavailableError: the backend's library is not installed (names the pip extra).
    """
    if name in _BACKENDS:
        target, extra = _BACKENDS[name]
    elif ":" in name:
        target, extra = name, ""
    else:
        raise UnknownBackendError(
            f"unknown index backend {name!r}; choose one of {names()} or give 'package.module:Class'"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        missing = getattr(e, "name", None) or module_name
        hint = f"pip install 'medsearch[{extra}]'" if extra else f"is the module {module_name!r} installed?"
        raise BackendUnavailableError(f"index backend {name!r} needs module {missing!r}: {hint} ({e})") from e
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise UnknownBackendError(
            f"index backend {name!r}: module {module_name!r} has no class {class_name!r}"
        )
    return cls


def create(name: str, dim: int, **options: Any) -> VectorIndex:
    """Open (or create) a vector index.

    Args:
        name: "faiss", "qdrant", "milvus", or a plug-in "package.module:Class" taking (dim=..., **options).
        dim: vector dimension.
        **options: the backend's options fields (see `indexers.options`), `options=` an options object,
            and for faiss `path=` (a folder; None keeps the index in memory).

    Examples:
        create("faiss", dim=384, kind="hnsw", path="idx/text")
        create("qdrant", dim=384, path="idx/qdrant")  or  create("qdrant", dim=384, url="http://host:6333")
        create("milvus", dim=384, uri="idx/text.db")  or  create("milvus", dim=384, uri="http://host:19530")
    """
    cls = backend_class(name)
    index = cls(dim=dim, **options)
    if not isinstance(index, VectorIndex):
        raise UnknownBackendError(f"index backend {name!r} built {type(index).__name__}, not a VectorIndex")
    logger.debug("created %s index (dim %d)", name, dim)
    return index
