"""`medsearch serve --workers N`: N uvicorn worker processes, each with its own engine, on one TCP listener.

The listener is bound with its protocol set to TCP so asyncio turns Nagle off on accepted connections (uvicorn
0.54 leaves it at 0: each keep-alive request after the first then waited ~40 ms for a delayed ACK); a delete
made through one worker is seen by the other before its next read.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.settings import Settings
from ui.api.app import WORKER_CONFIG_ENV, create_worker_app, worker_config
from ui.api.serve import TcpConfig, serve, tcp_listener
from ui.cli import main

KEY = "workers-test-key"


def _accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY on the server side of one connection that asyncio accepts on `listener`."""

    async def run() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            value = await asyncio.wait_for(accepted, 10)
        server.close()
        await server.wait_closed()
        return value

    return asyncio.run(run())


def test_tcp_listener_turns_nagle_off_on_accepted_connections():
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, as uvicorn binds it
    plain.bind(("127.0.0.1", 0))
    fixed = tcp_listener(plain)
    assert fixed.proto == socket.IPPROTO_TCP and fixed.family == socket.AF_INET
    assert _accepted_nodelay(fixed) != 0


def test_tcp_config_binds_a_tcp_listener():
    config = TcpConfig("ui.api.app:create_worker_app", factory=True, host="127.0.0.1", port=0, workers=2)
    sock = config.bind_socket()
    try:
        assert sock.proto == socket.IPPROTO_TCP and sock.get_inheritable()
    finally:
        sock.close()


def test_tcp_listener_leaves_unix_sockets_alone():
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert tcp_listener(left) is left


def test_worker_app_serves_the_settings_the_command_resolved(tmp_path: Path, monkeypatch):
    settings = Settings(home=tmp_path / "h", data=None, collection="notes", kg_enabled=False)
    monkeypatch.setenv(WORKER_CONFIG_ENV, worker_config(settings))
    monkeypatch.setenv("MEDSEARCH_COLLECTION", "other")  # the resolved settings win over the environment
    app = create_worker_app()
    assert app.state.engine.settings == settings
    assert not any(getattr(route, "path", "") == "/ui" for route in app.routes)  # API only


def test_a_worker_that_cannot_build_its_app_exits_with_the_startup_failure_code(monkeypatch, caplog):
    """Exit code 3 makes uvicorn's supervisor stop; any other code and it restarts the worker forever."""
    from uvicorn.config import STARTUP_FAILURE

    monkeypatch.setenv(WORKER_CONFIG_ENV, "{not json")
    with pytest.raises(SystemExit) as stopped:
        create_worker_app()
    assert stopped.value.code == STARTUP_FAILURE == 3
    assert WORKER_CONFIG_ENV in caplog.text


def test_serve_reports_a_worker_that_failed_to_start(monkeypatch, tmp_path: Path, capsys):
    """The supervisor returns normally when a worker exits with 3: `serve` raises, the command exits with 3."""
    import ui.api.serve as serve_module

    class FailedWorker:
        pid, exitcode = 4242, 3

    class Supervisor:
        def __init__(self, config, sockets):  # noqa: ANN001 - uvicorn's signature
            self.processes = [FailedWorker()]

        def run(self) -> None:
            pass

    monkeypatch.setattr(serve_module, "Multiprocess", Supervisor)
    for name in (
        WORKER_CONFIG_ENV,
        *serve_module.THREAD_VARIABLES,
    ):  # serve() sets them: undone after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    with pytest.raises(serve_module.WorkerStartupError, match="4242"):
        serve(Settings(home=tmp_path, data=None), port=0, workers=2, web=False)
    assert main(["--home", str(tmp_path), "serve", "--workers", "2", "--no-web", "--port", "0"]) == 3
    assert "failed to start" in capsys.readouterr().err


def test_workers_share_the_cores_unless_the_user_set_threads(monkeypatch):
    from ui.api.serve import THREAD_VARIABLES, share_cores

    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, "")  # recorded, so the test's values are undone after it
        monkeypatch.delenv(name)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert share_cores(2) == "4" and all(os.environ[name] == "4" for name in THREAD_VARIABLES)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert share_cores(2) == "3"
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert share_cores(4) == "1"


def test_invalid_api_settings_stop_before_any_worker_starts(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setenv("MEDSEARCH_READS_REQUIRE_KEY", "true")
    monkeypatch.delenv("MEDSEARCH_API_KEY", raising=False)
    assert main(["--home", str(tmp_path), "serve", "--workers", "2", "--no-web", "--port", "0"]) == 2
    assert "MEDSEARCH_API_KEY" in capsys.readouterr().err


def test_serve_workers_needs_no_web(capsys, tmp_path: Path):
    assert main(["--home", str(tmp_path), "serve", "--workers", "2"]) == 2
    assert "--no-web" in capsys.readouterr().err
    with pytest.raises(ValueError, match="API only"):
        serve(Settings(home=tmp_path, data=None), workers=2, web=True)
    with pytest.raises(SystemExit):
        main(["serve", "--workers", "0"])
    assert "at least 1" in capsys.readouterr().err


# ---------------------------------------------------------------------- two real worker processes
@pytest.fixture(scope="module")
def workers_home(tmp_path_factory, shared_data: Path, ui_minilm) -> Path:
    """40 IU X-ray reports in a MiniLM text space (no knowledge graph: each worker loads only MiniLM)."""
    from engine import datasets
    from engine.collection import Collection
    from engine.ingest import ingest_records

    home = tmp_path_factory.mktemp("workers-home")
    reports = datasets.load("iu-xray", shared_data / "iu-xray")[:40]
    with Collection.open(home, "default", create=True) as collection:
        ingest_records(collection, reports, {"text": ui_minilm}, source="iu-xray", progress=False)
    return home


@pytest.fixture
def two_workers(workers_home: Path, tmp_path: Path) -> Iterator[str]:
    from benchmarks import serving

    env = {
        **os.environ,
        "MEDSEARCH_HOME": str(workers_home),
        "MEDSEARCH_KG_ENABLED": "false",
        "MEDSEARCH_API_KEY": KEY,
        "MEDSEARCH_LOG_LEVEL": "WARNING",
    }
    args = ["--no-web", "--workers", "2"]
    with serving.running(env, args, processes=1, log=tmp_path / "serve.log", timeout=240) as url:
        yield url


def _connections_to_both_workers(url: str, count: int = 16, wait: float = 240) -> dict[int, list]:
    """Keep-alive clients opened at once, grouped by the process that answers; new sets of connections are
    opened until both workers have some (a worker still loading its models accepts nothing)."""
    import httpx

    deadline = time.monotonic() + wait
    seen: set[int] = set()
    while True:
        clients = [httpx.Client(base_url=url, timeout=60) for _ in range(count)]
        with ThreadPoolExecutor(count) as pool:
            pids = list(pool.map(lambda c: c.get("/health").json()["process"], clients))
        by_process: dict[int, list] = {}
        for client, pid in zip(clients, pids, strict=True):
            by_process.setdefault(pid, []).append(client)
        seen.update(by_process)
        if len(by_process) == 2:
            return by_process
        for client in clients:
            client.close()
        assert time.monotonic() < deadline, f"only processes {sorted(seen)} answered within {wait:.0f} s"
        time.sleep(0.5)


def test_two_workers_answer_and_see_each_others_deletes(two_workers: str, shared_data: Path):
    from engine import datasets

    reports = datasets.load("iu-xray", shared_data / "iu-xray")[:40]
    target = reports[7]
    query = {"text": target.text(), "k": 5, "mode": "dense"}
    by_process = _connections_to_both_workers(two_workers)
    assert all(pid != os.getpid() for pid in by_process)
    clients = [client for group in by_process.values() for client in group]
    try:
        for client in clients:  # every worker finds the record by its own text
            response = client.post("/search", json=query)
            assert response.status_code == 200, response.text
            assert response.json()["hits"][0]["id"] == target.id
        writer = next(iter(by_process.values()))[0]
        deleted = writer.delete(f"/records/{target.id}", headers={"X-API-Key": KEY})
        assert deleted.status_code == 200, deleted.text
        for pid, group in by_process.items():  # the other worker replays the delete before it reads
            for client in group:
                hits = [hit["id"] for hit in client.post("/search", json=query).json()["hits"]]
                assert target.id not in hits, (pid, hits)
                assert client.get(f"/records/{target.id}").status_code == 404, pid
    finally:
        for client in clients:
            client.close()
