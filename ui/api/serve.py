"""`serve`: run the API (and web app) under uvicorn, in one process or in N worker processes.

One process (`workers=1`): the app is built here and its lifespan loads the models and indexes once.
N processes: uvicorn's supervisor spawns N workers on one listening socket; each builds its own app with
`create_worker_app` from the settings resolved here (passed in `MEDSEARCH_SERVE_WORKER_CONFIG`), so each holds
its own models and indexes and the interpreter lock of one process no longer caps the server at one core.

The listening socket is bound here with its protocol set to TCP: uvicorn 0.54's `Config.bind_socket` leaves it
at 0, accepted sockets inherit that, and asyncio then skips TCP_NODELAY, so every keep-alive request after the
first waits ~40 ms for the client's delayed ACK (uvicorn issue #3149; measured here: 11 -> 52 ms per request).
"""

from __future__ import annotations

import logging
import os
import socket

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from engine.settings import Settings
from ui.api.app import WORKER_CONFIG_ENV, create_app, worker_config
from ui.api.settings import api_settings_from

logger = logging.getLogger(__name__)


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    web: bool = True,
    verbose: bool = False,
) -> None:
    """Serve until interrupted. `workers > 1` serves the API only (`web` must be False: the Gradio app keeps its
    event queue in one process).

    Raises:
        ValueError: workers < 1, or workers > 1 with the web app, or invalid API settings (checked here, before
            any worker starts).
        WorkerStartupError: a worker failed to start (its log says why); the others were stopped.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    where = f"http://{host}:{port}"
    if workers == 1:
        app = create_app(settings, web=web)
        logger.info("serving on %s (API at /, docs at /docs%s)", where, ", web app at /ui" if web else "")
        # log through our handlers (log_config=None); the lifespan loads everything once
        uvicorn.run(app, host=host, port=port, workers=1, log_config=None, proxy_headers=False)
        return
    if web:
        raise ValueError(
            f"{workers} worker processes serve the API only: add --no-web (the web app keeps its event queue in "
            "one process; serve it from its own single-process `medsearch serve --port OTHER`)"
        )
    api_settings_from(settings)  # invalid API settings fail here, once, not in every worker
    os.environ[WORKER_CONFIG_ENV] = worker_config(settings, web=False, verbose=verbose)
    threads = share_cores(workers)
    config = TcpConfig(
        "ui.api.app:create_worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        proxy_headers=False,
    )
    logger.info(
        "serving on %s with %d worker processes, %s OpenMP thread(s) each (API at /, docs at /docs)",
        where,
        workers,
        threads,
    )
    sock = config.bind_socket()
    supervisor = Multiprocess(config, sockets=[sock])  # handles SIGINT / SIGTERM: stops the workers, returns
    try:
        supervisor.run()
    finally:
        sock.close()
    failed = [process.pid for process in supervisor.processes if process.exitcode == STARTUP_FAILURE]
    if failed:
        raise WorkerStartupError(
            f"worker process(es) {failed} failed to start; their log lines above say why"
        )


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def share_cores(workers: int) -> str:
    """Give each worker process its share of the cores for torch, faiss and BLAS (OpenMP) threads: the workers
    inherit `OMP_NUM_THREADS` etc. = cores // workers (at least 1), unless the user set them. Returns the value.

    Every process otherwise starts one OpenMP thread per core, and N spinning pools on the same cores thrash:
    measured (`benchmarks/soak.py`, 50 clients, search + ask, 2 cores): 2 workers 24 requests/s, /ask p95 13.9 s
    without it, 146 requests/s, /ask p95 0.8 s with it; one process 73 requests/s.
    """
    share = str(max(1, (os.cpu_count() or 1) // workers))
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, share)
    return os.environ["OMP_NUM_THREADS"]


class WorkerStartupError(RuntimeError):
    """A `serve --workers N` worker exited before serving (a bad setting, a broken collection, ...)."""


def tcp_listener(sock: socket.socket) -> socket.socket:
    """`sock` as a socket whose `proto` reads IPPROTO_TCP, so asyncio sets TCP_NODELAY on the connections it
    accepts; other sockets (Unix) are returned unchanged."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto == socket.IPPROTO_TCP:
        return sock
    # the protocol given explicitly: Linux would read it from the descriptor, macOS (no SO_PROTOCOL) would not
    fixed = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    fixed.set_inheritable(True)
    return fixed


class TcpConfig(uvicorn.Config):
    """A `uvicorn.Config` whose `bind_socket` returns a listener with proto IPPROTO_TCP (see the module doc)."""

    def bind_socket(self) -> socket.socket:
        return tcp_listener(super().bind_socket())
