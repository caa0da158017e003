"""`medsearch serve` as a subprocess on a free loopback port, for benchmarks and tests.

`start` returns once every worker process answers `/health` (each probe is a fresh connection, so the kernel
hands them to different workers; a worker still loading accepts nothing); the server runs in its own process
group, so `stop` reaches the workers even when the supervisor has to be killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def start(
    env: Mapping[str, str],
    args: Sequence[str] = (),
    *,
    port: int | None = None,
    processes: int = 1,
    log: Path | None = None,
    timeout: float = 600.0,
) -> tuple[subprocess.Popen, str]:
    """(the server process, its URL): `medsearch serve --host 127.0.0.1 --port PORT ARGS` with `env`, once
    `processes` distinct server processes have answered /health.

    Raises:
        RuntimeError: the server exited, or fewer processes answered within `timeout` seconds (the log's tail
            is in the message when `log` is given).
    """
    port = port or free_port()
    command = [sys.executable, "-m", "ui.cli", "serve", "--host", LOOPBACK, "--port", str(port), *args]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
    try:
        server = subprocess.Popen(
            command, cwd=REPO, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        if log:
            out.close()
    url = f"http://{LOOPBACK}:{port}"
    answered: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(answered) < processes:
        if server.poll() is not None:
            raise RuntimeError(f"medsearch serve exited with {server.returncode}{_tail(log)}")
        if time.monotonic() > deadline:
            stop(server)
            raise RuntimeError(
                f"{len(answered)} of {processes} server processes answered /health in {timeout:.0f} s{_tail(log)}"
            )
        try:
            response = httpx.get(f"{url}/health", timeout=2)
            if response.status_code == 200:
                answered.add(response.json().get("process"))
                continue
        except httpx.HTTPError:
            pass
        time.sleep(0.1 if answered else 0.5)
    return server, url


def stop(server: subprocess.Popen) -> None:
    """SIGTERM (the supervisor stops its workers), then SIGKILL to the whole process group after 30 s."""
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


@contextmanager
def running(env: Mapping[str, str], args: Sequence[str] = (), **options) -> Iterator[str]:  # noqa: ANN003
    """`start` for the `with` block (options as `start`); yields the URL and stops the server after."""
    server, url = start(env, args, **options)
    try:
        yield url
    finally:
        stop(server)


def _tail(log: Path | None) -> str:
    return f"; log tail:\n{log.read_text(errors='replace')[-3000:]}" if log and log.is_file() else ""
