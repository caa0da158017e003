"""Concurrent searches through the app (TestClient + threads) return what serial ones do, and pick up writes
another process made (replayed under the exclusive side before the shared read)."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.collection import Collection
from engine.datasets.record import Record
from tests.ui.conftest import make_settings
from ui.api import ApiSettings, create_app

QUERIES = [
    {"text": "pleural effusion"},
    {"text": "no pneumothorax", "mode": "keyword"},
    {"text": "enlarged heart", "mode": "dense"},
    {"text": "brain mass on MRI", "k": 5},
    {"text": "fracture of the rib", "filters": {"source": "iu-xray"}},
    {"text": "lung nodule", "filters": {"source": "vqa-rad"}, "mode": "dense"},
    {"text": "normal chest x-ray"},
    {"text": "kidney", "mode": "keyword", "k": 3},
]


def _ranked(response) -> list[tuple[str, float]]:
    assert response.status_code == 200, response.text
    return [(hit["id"], hit["score"]) for hit in response.json()["hits"]]


@pytest.fixture(scope="module")
def app_client(ui_home: Path, workspace_factory):
    app = create_app(make_settings(ui_home), ApiSettings(), web=False, workspace_factory=workspace_factory)
    with TestClient(app) as client:
        yield client


def test_concurrent_searches_match_serial_ones(app_client):
    serial = [_ranked(app_client.post("/search", json=query)) for query in QUERIES]
    assert all(serial), "every query should find something"
    jobs = QUERIES * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda query: _ranked(app_client.post("/search", json=query)), jobs))
    for i, ranked in enumerate(concurrent):
        assert ranked == serial[i % len(QUERIES)], jobs[i]


def test_reads_see_writes_from_another_process(tmp_path: Path, ui_home: Path, workspace_factory):
    home = tmp_path / "home"
    shutil.copytree(ui_home, home)
    app = create_app(make_settings(home), ApiSettings(), web=False, workspace_factory=workspace_factory)
    with TestClient(app) as client:
        query = {"text": "zebrafish aquarium", "mode": "keyword"}
        assert _ranked(client.post("/search", json=query)) == []
        with Collection.open(home, "default") as other:  # another process's writer: SQLite only
            record = Record(id="ext:1", kind="report", source="iu-xray", findings="A zebrafish aquarium.")
            other.add([record])
        with ThreadPoolExecutor(max_workers=4) as pool:
            found = list(pool.map(lambda _: _ranked(client.post("/search", json=query)), range(4)))
        assert all(ranked and ranked[0][0] == "ext:1" for ranked in found), found
