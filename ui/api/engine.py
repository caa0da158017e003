"""`EngineHandle`: the process's one `Workspace`, opened in the app's lifespan, used under one lock.

The engine's objects are not thread-safe: a collection shares one SQLite connection, FAISS indexes allow no
search concurrent with a write (and cache filter masks), BM25 rebuilds lazily and the encoders' tokenizers
are shared. FastAPI runs sync routes and Gradio runs handlers in thread pools, so every engine call goes
through `EngineHandle.use()`, which serialises them. On a CPU server this costs little: one encode already
uses every core. A request that waits longer than `busy_timeout` (an ingest is running) gets a 503.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engine.errors import MEDSEARCH_ERRORS
from engine.settings import Settings
from engine.workspace import Workspace

logger = logging.getLogger(__name__)

WorkspaceFactory = Callable[[Settings], Workspace]


class EngineBusyError(RuntimeError):
    """The engine stayed busy (e.g. with an ingest) longer than the request may wait."""


class EngineNotStartedError(RuntimeError):
    """The app's lifespan has not opened the workspace (or has closed it)."""


class EngineHandle:
    """Holds the Workspace between the app's startup and shutdown; hands it out one caller at a time."""

    def __init__(self, settings: Settings, *, busy_timeout: float = 30.0) -> None:
        self.settings = settings
        self.busy_timeout = busy_timeout
        self._workspace: Workspace | None = None
        self._lock = threading.RLock()

    def open(self, factory: WorkspaceFactory = Workspace) -> None:
        """Build the workspace and warm it: open every collection, its indexes and its encoders once."""
        started = time.perf_counter()
        with self._lock:
            self._workspace = factory(self.settings)
            for name in self._workspace.collection_names():
                _warm(self._workspace, name)
        logger.info(
            "engine ready: home %s, %d collection(s), warmed in %.1fs",
            self.settings.home,
            len(self._workspace.collection_names()),
            time.perf_counter() - started,
        )

    def close(self) -> None:
        with self._lock:
            if self._workspace is not None:
                self._workspace.close()
                self._workspace = None

    @contextmanager
    def use(self) -> Iterator[Workspace]:
        """The workspace, held exclusively for the `with` block.

        Raises:
            EngineBusyError: the engine stayed busy for `busy_timeout` seconds.
            EngineNotStartedError: called before the lifespan opened the workspace.
        """
        if not self._lock.acquire(timeout=self.busy_timeout):
            raise EngineBusyError(
                f"the engine has been busy for {self.busy_timeout:.0f}s (an ingest may be running); retry later"
            )
        try:
            if self._workspace is None:
                raise EngineNotStartedError("the engine is not started: serve the app with its lifespan on")
            yield self._workspace
        finally:
            self._lock.release()


def _warm(workspace: Workspace, name: str) -> None:
    """Open a collection's indexes, load its encoders (and the knowledge graph when its records carry concepts),
    so the first request pays nothing extra."""
    try:
        collection = workspace.collection(name)
        collection.sync()
        workspace.search_service(name)
        for space, info in collection.spaces.items():
            workspace.encoder(info["encoder"])
            logger.debug("collection %s space %s: encoder %s loaded", name, space, info["encoder"])
        if collection.has_concepts():
            workspace.knowledge()  # hybrid text queries use the graph when records carry concepts
    except MEDSEARCH_ERRORS as e:  # a broken collection must not keep the others from being served
        logger.warning("collection %s not warmed up: %s", name, e)
