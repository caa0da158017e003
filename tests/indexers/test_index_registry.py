"""The backend registry, option objects and the lazy-import boundary of `import indexers`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import indexers
from indexers import (
    BackendUnavailableError,
    FaissOptions,
    MilvusOptions,
    OptionsError,
    QdrantOptions,
    UnknownBackendError,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_names() -> None:
    assert indexers.names() == ["faiss", "milvus", "qdrant"]


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(UnknownBackendError, match=r"unknown index backend 'annoy'; choose one of \['faiss'"):
        indexers.create("annoy", dim=8)


@pytest.mark.parametrize(
    ("backend", "module", "extra"),
    [("faiss", "faiss", "faiss"), ("qdrant", "qdrant_client", "qdrant"), ("milvus", "pymilvus", "milvus")],
)
def test_missing_library_names_the_pip_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backend: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(sys.modules, f"indexers.{backend}_index", raising=False)
    monkeypatch.delitem(sys.modules, "indexers.faiss_build", raising=False)
    with pytest.raises(BackendUnavailableError, match=rf"pip install 'medsearch\[{extra}\]'") as caught:
        indexers.create(backend, dim=8, path=str(tmp_path / "x"))
    assert isinstance(caught.value, ImportError)


def test_plugin_module_class(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "my_plugin_index.py").write_text(
        textwrap.dedent(
            """
            class TinyIndex:
                def __init__(self, dim, greeting="hi"):
                    self.dim, self.greeting = dim, greeting
                def add(self, ids, vectors, payloads=None): ...
                def search(self, vectors, k, filter=None): ...
                def delete(self, ids): return 0
                def count(self): return 0
                def ids(self): return set()
                def save(self): ...
                def close(self): ...

            class NotAnIndex:
                def __init__(self, dim): ...
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    index = indexers.create("my_plugin_index:TinyIndex", dim=3, greeting="hello")
    assert isinstance(index, indexers.VectorIndex) and index.greeting == "hello"
    with pytest.raises(UnknownBackendError, match="has no class 'Missing'"):
        indexers.create("my_plugin_index:Missing", dim=3)
    with pytest.raises(UnknownBackendError, match="not a VectorIndex"):
        indexers.create("my_plugin_index:NotAnIndex", dim=3)
    with pytest.raises(BackendUnavailableError, match="is the module 'no_such_module_xyz' installed"):
        indexers.create("no_such_module_xyz:Index", dim=3)


def test_options_object_or_keywords_and_unknown_keyword() -> None:
    pytest.importorskip("faiss")
    by_object = indexers.create("faiss", dim=8, options=FaissOptions(kind="hnsw", ef_search=99))
    by_keyword = indexers.create("faiss", dim=8, kind="hnsw", ef_search=99)
    assert by_object.options == by_keyword.options
    assert (
        indexers.create("faiss", dim=8, options=FaissOptions(kind="hnsw"), ef_search=5).options.ef_search == 5
    )
    with pytest.raises(OptionsError, match=r"unknown FaissOptions option\(s\) \['efsearch'\]; valid: \["):
        indexers.create("faiss", dim=8, efsearch=99)
    with pytest.raises(OptionsError, match="must be a FaissOptions"):
        indexers.create("faiss", dim=8, options=QdrantOptions())


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: QdrantOptions(path="/x", url="http://h:6333"), "both path='/x' .* and url='http://h:6333'"),
        (lambda: FaissOptions(kind="lsh"), r"FaissOptions.kind='lsh': choose one of \['flat', 'hnsw'"),
        (lambda: FaissOptions(use_gpu="yes"), "use_gpu"),
        (lambda: FaissOptions(nprobe=0), "nprobe=0: expected a positive integer"),
        (lambda: FaissOptions(compact_ratio=0), "compact_ratio"),
        (lambda: MilvusOptions(index_type="DISKANN"), "index_type"),
        (lambda: MilvusOptions(collection="my-collection"), "use letters, digits and '_'"),
    ],
)
def test_bad_options_name_the_field(build, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        build()


def test_import_indexers_loads_no_backend_library() -> None:
    code = (
        "import sys, indexers; from indexers import Filter, parse_filters, create, names, VectorIndex; "
        "heavy = [m for m in ('faiss', 'qdrant_client', 'pymilvus', 'bm25s') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_bm25_index_is_exported_lazily() -> None:
    pytest.importorskip("bm25s")
    from indexers.keyword import BM25Index

    assert indexers.BM25Index is BM25Index
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        indexers.Nope  # noqa: B018
