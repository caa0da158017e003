"""The graph built from every shared source (DOID, RadLex, SLAKE KG, curated): known concepts, linking
of real IU X-ray reports, cache reuse. Building takes about 5-15 s on one core; done once per module."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from kg import ConceptGraph, GraphSources, Linker, load_or_build
from kg.evaluate import linking_scores, read_iu_reports


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def built(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ConceptGraph, Path, list[str]]:
    sources = GraphSources.from_data_dir(shared_data)
    if sources.doid is None or sources.radlex is None or sources.slake_kg_dir is None:
        pytest.skip("shared DOID, RadLex or SLAKE KG files are missing")
    cache = tmp_path_factory.mktemp("home") / "kg"
    handler = _Records()
    logger = logging.getLogger("kg.build")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        graph = load_or_build(cache, sources)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    return graph, cache, handler.messages


@pytest.fixture(scope="module")
def full_linker(built) -> Linker:
    return Linker(built[0])


def test_build_time_is_logged(built) -> None:
    graph, _, messages = built
    assert graph.metadata["cache"] == "built"
    assert any(m.startswith("built knowledge graph") and m.endswith("s") for m in messages)
    stats = graph.stats()
    assert stats["concepts"] > 50_000
    assert {"doid", "radlex", "slake", "curated"} <= set(stats["sources"])


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("cardiomegaly", "cardiomegaly"),
        ("pleural effusion", "pleural effusion"),
        ("pneumothorax", "pneumothorax"),
        ("enlarged heart", "cardiomegaly"),
        ("UMLS:C0018800", "cardiomegaly"),
        ("hiatal hernia", "hiatus hernia"),
        ("RID5352", "pneumothorax"),
    ],
)
def test_known_concepts(built, query: str, name: str) -> None:
    assert built[0].concept(query).name == name


def test_lay_wordings_link(full_linker: Linker) -> None:
    mentions = full_linker.link("Enlarged heart. Fluid around the lung. Collapsed lung.")
    assert [m.name for m in mentions] == ["cardiomegaly", "pleural effusion", "pneumothorax"]


def test_cache_reuse_loads_fast(built) -> None:
    graph, cache, _ = built
    started = time.perf_counter()
    again = load_or_build(
        cache, GraphSources.from_data_dir(Path(graph.metadata["sources"]["doid"]).parents[1])
    )
    assert again.metadata["cache"] == "hit"
    assert time.perf_counter() - started < 10


def test_links_all_iu_reports_quickly_and_well(built, full_linker: Linker, shared_data: Path) -> None:
    reports_csv = shared_data / "iu-xray" / "indiana_reports.csv"
    if not reports_csv.is_file():
        pytest.skip("IU X-ray reports are missing")
    reports = read_iu_reports(reports_csv)
    started = time.perf_counter()
    mentions = full_linker.link_many(text for text, _ in reports)
    assert time.perf_counter() - started < 15  # about 1 s on one core
    assert len(mentions) == 3441
    scores = linking_scores(built[0], full_linker, reports[:500])
    assert scores["f1"] > 0.7
