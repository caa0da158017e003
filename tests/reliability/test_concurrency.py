"""Concurrency: many HTTP clients against a real uvicorn server on loopback (a 5 s soak here, the full 60 s
with 50 clients under `-m slow`; `benchmarks/soak.py` runs it against `medsearch serve`), and an ingest in
another process while searches run: every hit is a stored record and results for records already present
do not change.
"""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.collection import Collection
from engine.ingest import ingest_records
from tests.reliability.conftest import make_app
from tests.reliability.tiny import register_hash_encoder, synthetic_reports

REPO = Path(__file__).resolve().parents[2]


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak", REPO / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def live_server(tmp_path: Path, rel_home: Path, rel_factory) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a thread of this process (lifespan on)."""
    import uvicorn

    home = tmp_path / "home"
    shutil.copytree(rel_home, home)
    config = uvicorn.Config(make_app(home, rel_factory), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def _soak(url: str, duration: float, clients: int) -> dict:
    result = _soak_module().run_soak(url, duration=duration, clients=clients, timeout=60)
    print({key: result[key] for key in ("requests", "errors", "latency_ms", "ask_included", "mix")})
    assert result["errors"] == 0, result["error_samples"]
    assert result["requests"] > clients
    return result


def test_short_soak_has_no_errors(live_server):
    _soak(live_server, duration=5, clients=20)


@pytest.mark.slow
def test_soak_50_clients_60_seconds(live_server):
    _soak(live_server, duration=60, clients=50)


def test_soak_finds_ask_in_the_schema():
    soak = _soak_module()
    assert soak.ask_field({"paths": {}}) is None
    schema = {
        "paths": {
            "/ask": {
                "post": {
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ask"}}}
                    }
                }
            }
        },
        "components": {"schemas": {"Ask": {"properties": {"collection": {}, "question": {}}}}},
    }
    assert soak.ask_field(schema) == "question"
    with pytest.raises(SystemExit, match="loopback"):
        soak.run_soak("http://192.0.2.1:80", duration=0.1, clients=1)


# ---------------------------------------------------------------------- ingest while searching
BASE = 40  # records present before the concurrent ingest
MORE = 96  # records the other process adds, 8 per batch with a pause after each


def _stored_ids(home: Path) -> set[str]:
    with sqlite3.connect(home / "collections" / "default" / "records.sqlite") as db:
        return {row[0] for row in db.execute("SELECT id FROM records")}


def test_ingest_in_another_process_while_searching(tmp_path, rel_factory):
    """An ingest process commits batches while this process's API answers searches from 4 threads."""
    home = tmp_path / "home"
    encoder = register_hash_encoder()
    base = synthetic_reports(BASE, prefix="base")
    with Collection.open(home, "default", create=True) as collection:
        ingest_records(collection, base, {"text": encoder}, source="base", progress=False)
    command = [sys.executable, "-m", "tests.reliability.crash_child", str(home), "faiss", "--prefix", "more"]
    command += ["--count", str(MORE), "--batch-size", "8", "--delay", "0.12"]
    with TestClient(make_app(home, rel_factory), raise_server_exceptions=False) as client:
        expected = {r.id: _top(client, r.text(), "dense") for r in base}
        assert all(expected[r.id][0] == r.id for r in base)
        writer = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen: set[str] = set()
        rounds = {"n": 0}

        def search_while_ingesting(worker: int) -> None:
            while writer.poll() is None:
                for record in base[worker::4]:
                    hits = _top(client, record.text(), "dense")
                    # new records may enter the page, but the records already there keep their order
                    kept = [hit for hit in hits if hit.startswith("base:")]
                    assert kept == expected[record.id][: len(kept)] and hits[0] == record.id, hits
                    for mode in ("hybrid", "keyword"):
                        hits = _top(client, record.text(), mode, k=10)
                        assert hits[0] == record.id, (mode, record.id, hits)
                        seen.update(hits)
                    seen.update(_top(client, "report more stable lung", "hybrid", k=20))
                rounds["n"] += 1

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(search_while_ingesting, range(4)))
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr.decode()[-2000:]
        assert rounds["n"] >= 4, "the searches should have overlapped the ingest"
        stored = _stored_ids(home)
        assert len(stored) == BASE + MORE and seen <= stored
        assert any(hit.startswith("more:") for hit in seen), "searches should see records as they land"
        last = synthetic_reports(1, start=MORE - 1, prefix="more")[0]
        assert _top(client, last.text(), "dense")[0] == last.id
        stats = client.get("/collections/default").json()
        assert stats["records"] == stats["vectors"]["text"] == BASE + MORE


def _top(client: TestClient, text: str, mode: str, k: int = 5) -> list[str]:
    response = client.post("/search", json={"text": text, "mode": mode, "k": k})
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["hits"]]
