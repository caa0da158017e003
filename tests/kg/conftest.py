"""Fixtures for kg tests: small real-data slices in tests/data/kg and a graph built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg import ConceptGraph, GraphSources, Linker, build_graph

KG_DATA = Path(__file__).resolve().parents[1] / "data" / "kg"


@pytest.fixture(scope="session")
def kg_data() -> Path:
    """Folder of the kg fixtures (DOID and RadLex slices, SLAKE rows, a tiny UMLS RRF set)."""
    return KG_DATA


@pytest.fixture(scope="session")
def fixture_sources() -> GraphSources:
    """All four sources from the fixtures, plus the shipped curated files."""
    return GraphSources(
        doid=KG_DATA / "doid_slice.obo",
        radlex=KG_DATA / "radlex_slice.csv",
        slake_kg_dir=KG_DATA / "slake",
        umls_dir=KG_DATA / "umls",
    )


@pytest.fixture(scope="session")
def small_graph(fixture_sources: GraphSources) -> ConceptGraph:
    """A graph built from the fixtures; shared, so tests must not change it (use ``fresh_graph``)."""
    return build_graph(fixture_sources)


@pytest.fixture()
def fresh_graph(fixture_sources: GraphSources) -> ConceptGraph:
    """A graph of one's own (building from the fixtures takes well under a second)."""
    return build_graph(fixture_sources)


@pytest.fixture(scope="session")
def linker(small_graph: ConceptGraph) -> Linker:
    """A linker over the fixture graph."""
    return Linker(small_graph)
