"""Reliability fixtures: a small real home that loads in a second (hashed text encoder, raw-pixel image
encoder, the knowledge graph of tests/data/kg), and an API client over it.

No MiniLM and no full graph: these tests are about what the engine and API do with bad input, crashes and
load, not about ranking quality, so they keep to the cheapest real parts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.settings import Settings
from engine.workspace import Workspace
from tests.reliability.tiny import ENCODER, register_hash_encoder
from tests.ui.conftest import PixelEncoder

KEY = "reliability-key-0123456789"
AUTH = {"X-API-Key": KEY}
UPLOAD_LIMIT = 300_000
KG_DATA = Path(__file__).resolve().parents[1] / "data" / "kg"
VQA_IMAGES = 40  # VQA-RAD image+text records in `default` (text and clip spaces)
IU_REPORTS = 30  # IU X-ray reports in `default` (text space only)


def rel_settings(home: Path) -> Settings:
    """Settings whose text encoder is the hashed one (so POST /ingest needs no model download)."""
    return Settings(home=home, data=None, encoders={"text": ENCODER})


@pytest.fixture(scope="session")
def small_knowledge():
    """The knowledge graph of the kg fixtures (DOID / RadLex slices, tiny UMLS): built in well under a second."""
    from engine.knowledge import Knowledge
    from kg import GraphSources, Linker, build_graph

    sources = GraphSources(
        doid=KG_DATA / "doid_slice.obo",
        radlex=KG_DATA / "radlex_slice.csv",
        slake_kg_dir=KG_DATA / "slake",
        umls_dir=KG_DATA / "umls",
    )
    graph = build_graph(sources)
    return Knowledge(graph, Linker(graph))


@pytest.fixture(scope="session")
def rel_factory(small_knowledge) -> Callable[[Settings], Workspace]:
    """Builds Workspaces holding the hashed text encoder, the pixel encoder and the small graph."""
    text, pixels = register_hash_encoder(), PixelEncoder()

    def factory(settings: Settings) -> Workspace:
        workspace = Workspace(settings)
        workspace._encoders.update({ENCODER: text, pixels.name: pixels})
        workspace._knowledge = small_knowledge
        return workspace

    return factory


@pytest.fixture(scope="session")
def rel_home(tmp_path_factory, shared_data: Path, rel_factory) -> Path:
    """A home with `default`: VQA_IMAGES VQA-RAD images with their QA (text + clip spaces, concepts linked)
    and IU_REPORTS IU X-ray reports (text space)."""
    from engine import datasets
    from engine.ingest import ingest_records

    home = tmp_path_factory.mktemp("rel-home")
    images = datasets.load("vqa-rad", shared_data / "vqa-rad")[:VQA_IMAGES]
    reports = datasets.load("iu-xray", shared_data / "iu-xray")[:IU_REPORTS]
    with rel_factory(rel_settings(home)) as workspace:
        collection = workspace.collection(create=True)
        linker = workspace.knowledge().link_records
        both = {"text": workspace.encoder(ENCODER), "clip": workspace.encoder(PixelEncoder.name)}
        ingest_records(collection, images, both, source="vqa-rad", linker=linker, progress=False)
        text = {"text": workspace.encoder(ENCODER)}
        ingest_records(collection, reports, text, source="iu-xray", linker=linker, progress=False)
    return home


def make_app(home: Path, factory: Callable[[Settings], Workspace], **api_overrides):
    from ui.api import ApiSettings, create_app

    values = {"api_key": KEY, "max_upload_bytes": UPLOAD_LIMIT, **api_overrides}
    return create_app(rel_settings(home), ApiSettings(**values), web=False, workspace_factory=factory)


@pytest.fixture(scope="module")
def api_client(rel_home: Path, rel_factory) -> Iterator:
    """A TestClient (lifespan on) over a copy-free `rel_home`; tests that write use their own collections."""
    from fastapi.testclient import TestClient

    with TestClient(make_app(rel_home, rel_factory), raise_server_exceptions=False) as client:
        yield client
