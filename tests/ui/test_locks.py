"""`ReadWriteLock` semantics and `EngineHandle`'s two sides: readers overlap, a writer excludes, busy -> 503."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from engine.settings import Settings
from ui.api import ApiSettings, create_app
from ui.api.engine import EngineBusyError, EngineHandle
from ui.api.locks import ReadWriteLock


def test_readers_overlap():
    lock = ReadWriteLock()
    inside = threading.Barrier(3, timeout=5)  # 3 readers must all be inside at once to pass

    def reader() -> None:
        assert lock.acquire_read(timeout=5)
        try:
            inside.wait()
        finally:
            lock.release_read()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert not inside.broken and lock.readers == 0


def test_writer_excludes_readers_and_writers():
    lock = ReadWriteLock()
    assert lock.acquire_write(timeout=1)
    results = {}

    def other() -> None:
        results["read"] = lock.acquire_read(timeout=0.1)
        results["write"] = lock.acquire_write(timeout=0.1)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(5)
    assert results == {"read": False, "write": False}
    assert lock.acquire_read(timeout=0) and lock.acquire_write(timeout=0)  # the writer may nest both
    lock.release_write()
    lock.release_read()
    lock.release_write()
    assert lock.acquire_read(timeout=0)
    lock.release_read()


def test_reader_excludes_writer_and_waiting_writer_holds_back_new_readers():
    lock = ReadWriteLock()
    assert lock.acquire_read(timeout=1)
    order: list[str] = []

    def writer() -> None:
        assert lock.acquire_write(timeout=5)
        order.append("write")
        lock.release_write()

    def late_reader() -> None:
        assert lock.acquire_read(timeout=5)
        order.append("read")
        lock.release_read()

    writing = threading.Thread(target=writer)
    writing.start()
    time.sleep(0.1)  # the writer is waiting now
    reading = threading.Thread(target=late_reader)
    reading.start()
    time.sleep(0.1)
    assert order == []  # neither the writer (a reader holds on) nor the late reader (a writer waits) got in
    assert lock.acquire_read(timeout=0)  # the holding reader may nest
    lock.release_read()
    lock.release_read()
    writing.join(5)
    reading.join(5)
    assert order == ["write", "read"]


def test_timed_out_writer_lets_readers_in_and_misuse_is_refused():
    lock = ReadWriteLock()
    assert lock.acquire_read(timeout=1)
    got = []
    thread = threading.Thread(target=lambda: got.append(lock.acquire_write(timeout=0.1)))
    thread.start()
    thread.join(5)
    assert got == [False]
    reader = threading.Thread(
        target=lambda: got.append(lock.acquire_read(timeout=1) and lock.release_read() is None)
    )
    reader.start()
    reader.join(5)
    assert got == [False, True]
    with pytest.raises(RuntimeError):
        lock.acquire_write(timeout=0)  # would deadlock: this thread reads
    lock.release_read()
    with pytest.raises(RuntimeError):
        lock.release_read()
    with pytest.raises(RuntimeError):
        lock.release_write()


class _StubWorkspace:
    """Stands in for a Workspace: the handle only needs these methods here (no models: nothing to warm)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.refreshed = 0

    def model_dir(self, space: str):
        return self.settings.home / "models" / space

    def collection_names(self) -> list[str]:
        return []

    def is_current(self) -> bool:
        return self.refreshed > 0

    def refresh(self) -> None:
        self.refreshed += 1

    def pinned(self):
        from contextlib import nullcontext

        return nullcontext(self)

    def close(self) -> None:
        pass


def test_handle_reads_share_writes_exclude_and_serial_mode(tmp_path):
    handle = EngineHandle(Settings(home=tmp_path, data=None), busy_timeout=0.2)
    handle.open(_StubWorkspace)

    def in_thread(action) -> list:
        out: list = []

        def run() -> None:
            try:
                with action():
                    out.append("in")
            except EngineBusyError:
                out.append("busy")

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(5)
        return out

    with handle.read() as workspace:
        assert workspace.refreshed == 1  # a stale workspace is refreshed (exclusively) before the read
        assert in_thread(handle.read) == ["in"]  # readers share
        assert in_thread(handle.write) == ["busy"]  # a writer waits for the readers (503 after the timeout)
    with handle.write():
        assert in_thread(handle.read) == ["busy"]
        assert in_thread(handle.use) == ["busy"]  # use() is exclusive, as before
    with handle.use(write=False):
        assert in_thread(lambda: handle.use(write=False)) == ["in"]
    serial = EngineHandle(Settings(home=tmp_path, data=None), busy_timeout=0.2, concurrent_reads=False)
    serial.open(_StubWorkspace)
    with serial.read():
        assert in_thread(serial.read) == ["busy"]  # serial mode: reads are exclusive too


def test_busy_engine_answers_503_to_a_search(tmp_path):
    app = create_app(
        Settings(home=tmp_path, data=None),
        ApiSettings(busy_timeout_seconds=0.2),
        web=False,
        workspace_factory=_StubWorkspace,
    )
    with TestClient(app) as client:
        engine = app.state.engine
        held = threading.Event()
        done = threading.Event()

        def hold() -> None:
            with engine.write():
                held.set()
                done.wait(5)

        thread = threading.Thread(target=hold)
        thread.start()
        held.wait(5)
        response = client.post("/search", json={"text": "pleural effusion"})
        done.set()
        thread.join(5)
    assert response.status_code == 503, response.text
    assert "busy" in response.json()["detail"]
