"""build_graph / load_or_build: sources, cache reuse and invalidation, build time logged."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from kg import GraphSources, build_graph, load_or_build
from kg.build import SourceNotFoundError, cache_key


def _copy_sources(kg_data: Path, folder: Path) -> GraphSources:
    shutil.copy(kg_data / "doid_slice.obo", folder / "doid.obo")
    shutil.copy(kg_data / "radlex_slice.csv", folder / "Radlex.csv")
    return GraphSources(doid=folder / "doid.obo", radlex=folder / "Radlex.csv")


def test_cache_is_reused_then_invalidated(kg_data: Path, tmp_path: Path, caplog) -> None:
    sources = _copy_sources(kg_data, tmp_path)
    cache = tmp_path / "home" / "kg"
    with caplog.at_level(logging.INFO, logger="kg.build"):
        first = load_or_build(cache, sources)
    assert first.metadata["cache"] == "built"
    assert any("built knowledge graph" in r.getMessage() for r in caplog.records)
    assert first.metadata["build_seconds"] >= 0

    second = load_or_build(cache, sources)
    assert second.metadata["cache"] == "hit"  # loaded, not rebuilt
    assert second.stats()["concepts"] == first.stats()["concepts"]

    doid = sources.doid
    assert doid is not None
    stat = doid.stat()
    os.utime(doid, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a changed source rebuilds
    third = load_or_build(cache, sources)
    assert third.metadata["cache"] == "built"
    assert len(list(cache.glob("graph-*.pkl"))) == 1  # the stale cache file was removed


def test_unreadable_cache_is_rebuilt(kg_data: Path, tmp_path: Path) -> None:
    sources = _copy_sources(kg_data, tmp_path)
    cache = tmp_path / "kg"
    cache.mkdir()
    (cache / f"graph-{cache_key(sources)}.pkl").write_bytes(b"garbage")
    assert load_or_build(cache, sources).metadata["cache"] == "built"


def test_sources_from_data_dir_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "radlex").mkdir()
    (tmp_path / "radlex" / "Radlex.csv").write_text("lung,RID1301,RID13419\n", encoding="utf-8")
    sources = GraphSources.from_data_dir(tmp_path)
    assert sources.radlex == tmp_path / "radlex" / "Radlex.csv"
    assert sources.doid is None and sources.slake_kg_dir is None
    assert build_graph(sources).concept("lung").id == "RID1301"
    with pytest.raises(SourceNotFoundError, match="doid source"):
        build_graph(GraphSources(doid=tmp_path / "missing.obo"))
