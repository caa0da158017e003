"""`EngineHandle`: the process's one `Workspace`, opened in the app's lifespan, used under a readers-writer lock.

FastAPI runs sync routes and Gradio runs handlers in thread pools, so every engine call goes through the
handle. `read()` is the shared side: searches run at once, since what they touch is safe for concurrent
readers while nothing writes: FAISS searches are thread-safe, the SQLite connection is serialised by SQLite
(`sqlite3.threadsafety == 3`), the MiniLM encode holds its own lock (its tokenizer is not reentrant), and a
reader runs `pinned()`, serving the loaded indexes without replaying changes; when another process has written
since, the handle first replays them under the exclusive side. `write()` (ingest, delete) and `use()` (any
other caller, as before) are exclusive. With `concurrent_reads=False` reads are exclusive too (the old global
lock). A request that waits longer than `busy_timeout` (an ingest is running) gets a 503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from engine.concept_search import concept_postings
from engine.errors import MEDSEARCH_ERRORS
from engine.settings import Settings
from engine.workspace import Workspace
from ui.api.locks import ReadWriteLock

logger = logging.getLogger(__name__)

WorkspaceFactory = Callable[[Settings], Workspace]


class EngineBusyError(RuntimeError):
    """The engine stayed busy (e.g. with an ingest) longer than the request may wait."""


class EngineNotStartedError(RuntimeError):
    """The app's lifespan has not opened the workspace (or has closed it)."""


class EngineHandle:
    """Holds the Workspace between the app's startup and shutdown; hands it to many readers or one writer.

    Args:
        settings: engine settings.
        busy_timeout: seconds a caller waits for its side of the lock before EngineBusyError (503).
        concurrent_reads: False makes `read()` exclusive too (one engine call at a time, as before).
    """

    def __init__(
        self, settings: Settings, *, busy_timeout: float = 30.0, concurrent_reads: bool = True
    ) -> None:
        self.settings = settings
        self.busy_timeout = busy_timeout
        self.concurrent_reads = concurrent_reads
        self._workspace: Workspace | None = None
        self._lock = ReadWriteLock()

    def open(self, factory: WorkspaceFactory = Workspace) -> None:
        """Build the workspace and warm it: open every collection, its indexes and its encoders once."""
        started = time.perf_counter()
        with self._exclusive():
            self._workspace = factory(self.settings)
            for name in self._workspace.collection_names():
                _warm(self._workspace, name)
            _warm_vqa(self._workspace)
        logger.info(
            "engine ready: home %s, %d collection(s), warmed in %.1fs",
            self.settings.home,
            len(self._workspace.collection_names()),
            time.perf_counter() - started,
        )

    def close(self) -> None:
        with self._exclusive():
            if self._workspace is not None:
                self._workspace.close()
                self._workspace = None

    @contextmanager
    def use(self, write: bool = True) -> Iterator[Workspace]:
        """The workspace for the `with` block: held exclusively (`write=True`, the default), or shared with
        other readers (`write=False`, same as `read()`).

        Raises:
            EngineBusyError: the engine stayed busy for `busy_timeout` seconds.
            EngineNotStartedError: called before the lifespan opened the workspace.
        """
        if not write:
            with self.read() as workspace:
                yield workspace
            return
        with self._exclusive():
            yield self._started()

    def write(self) -> AbstractContextManager[Workspace]:
        """The workspace, held exclusively (ingest, delete, anything that changes the engine's state)."""
        return self.use(write=True)

    @contextmanager
    def read(self) -> Iterator[Workspace]:
        """The workspace, shared with other readers (searches, record reads): nothing may write through it.

        Changes another process made since the indexes were loaded are first replayed under the exclusive side.
        """
        if not self.concurrent_reads:
            with self._exclusive():
                yield self._started()
            return
        with self._shared():
            current = self._started().is_current()
        if not current:
            with self._exclusive():
                self._started().refresh()
        with self._shared():
            with self._started().pinned() as workspace:
                yield workspace

    def _started(self) -> Workspace:
        if self._workspace is None:
            raise EngineNotStartedError("the engine is not started: serve the app with its lifespan on")
        return self._workspace

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._lock.acquire_write(timeout=self.busy_timeout):
            raise self._busy()
        try:
            yield
        finally:
            self._lock.release_write()

    @contextmanager
    def _shared(self) -> Iterator[None]:
        if not self._lock.acquire_read(timeout=self.busy_timeout):
            raise self._busy()
        try:
            yield
        finally:
            self._lock.release_read()

    def _busy(self) -> EngineBusyError:
        return EngineBusyError(
            f"the engine has been busy for {self.busy_timeout:.0f}s (an ingest may be running); retry later"
        )


def _warm_vqa(workspace: Workspace) -> None:
    """Load the trained VQA model (when this home has one) so the first `POST /ask` pays nothing extra."""
    from engine.vqa.service import MODEL_FILE

    if not (workspace.model_dir("vqa") / MODEL_FILE).is_file():
        return
    try:
        workspace.vqa()
    except MEDSEARCH_ERRORS as e:  # stale or unreadable: /ask answers with the reason, searches go on
        logger.warning("VQA model not loaded: %s", e)


def _warm(workspace: Workspace, name: str) -> None:
    """Open a collection's indexes, load its encoders (and, when its records carry concepts, the knowledge graph
    and the concept posting index), so the first request pays nothing extra."""
    try:
        collection = workspace.collection(name)
        collection.sync()
        workspace.search_service(name)
        for space, info in collection.spaces.items():
            workspace.encoder(info["encoder"])
            logger.debug("collection %s space %s: encoder %s loaded", name, space, info["encoder"])
        if collection.has_concepts() and workspace.knowledge() is not None:
            concept_postings(collection)  # hybrid text queries rank by the records' concepts: index them now
    except MEDSEARCH_ERRORS as e:  # a broken collection must not keep the others from being served
        logger.warning("collection %s not warmed up: %s", name, e)
