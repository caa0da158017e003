"""`ReadWriteLock`: many readers at once, or one writer alone; writers are preferred, waits can time out.

Searches take the shared side and run concurrently; ingest and delete take the exclusive side. A waiting
writer blocks new readers (so a stream of searches cannot starve an ingest). Both sides are reentrant for the
thread that holds them: a reader may read again, a writer may read or write again (the engine calls nest).
"""

from __future__ import annotations

import threading
import time


class ReadWriteLock:
    """A writer-preferring readers-writer lock with timeouts.

    `acquire_read(timeout)` / `acquire_write(timeout)` return False when the lock could not be had within
    `timeout` seconds (None = wait forever); `release_read()` / `release_write()` undo one acquire.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._readers: dict[int, int] = {}  # thread id -> nested read depth
        self._writer: int | None = None  # thread id of the writer
        self._writer_depth = 0
        self._writers_waiting = 0

    @property
    def readers(self) -> int:
        """Threads holding the shared side now."""
        return len(self._readers)

    def acquire_read(self, timeout: float | None = None) -> bool:
        me = threading.get_ident()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            if self._writer == me or me in self._readers:  # nested: never wait on ourselves
                self._readers[me] = self._readers.get(me, 0) + 1
                return True
            while self._writer is not None or self._writers_waiting:
                if not self._wait(deadline):
                    return False
            self._readers[me] = 1
            return True

    def release_read(self) -> None:
        me = threading.get_ident()
        with self._condition:
            depth = self._readers.get(me, 0)
            if depth == 0:
                raise RuntimeError("release_read() by a thread that holds no read lock")
            if depth == 1:
                del self._readers[me]
                if not self._readers:
                    self._condition.notify_all()
            else:
                self._readers[me] = depth - 1

    def acquire_write(self, timeout: float | None = None) -> bool:
        me = threading.get_ident()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            if self._writer == me:
                self._writer_depth += 1
                return True
            if me in self._readers:
                raise RuntimeError("cannot take the write lock while holding a read lock (would deadlock)")
            self._writers_waiting += 1
            try:
                while self._writer is not None or self._readers:
                    if not self._wait(deadline):
                        return False
            finally:
                self._writers_waiting -= 1
                if self._writer is None:
                    self._condition.notify_all()  # readers held back by this waiting writer may go now
            self._writer, self._writer_depth = me, 1
            return True

    def release_write(self) -> None:
        with self._condition:
            if self._writer != threading.get_ident():
                raise RuntimeError("release_write() by a thread that does not hold the write lock")
            self._writer_depth -= 1
            if self._writer_depth == 0:
                self._writer = None
                self._condition.notify_all()

    def _wait(self, deadline: float | None) -> bool:
        """Wait for a change; False once the deadline has passed."""
        if deadline is None:
            self._condition.wait()
            return True
        remaining = deadline - time.monotonic()
        return remaining > 0 and (self._condition.wait(remaining) or time.monotonic() < deadline)
