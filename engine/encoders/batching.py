"""`Coalescer`: concurrent calls of one batch function share forward passes.

A search server encodes one short query per request. When requests arrive together, each waiting for the
model, the first runs alone and the ones that queued meanwhile run as ONE batch when it is done: one forward
pass for ten queries costs far less than ten. Only one batch runs at a time, so the wrapped function never
runs concurrently with itself (the MiniLM tokenizer is not reentrant). A lone caller pays nothing extra.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class _Job:
    __slots__ = ("items", "result", "error", "done")

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = list(items)
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class Coalescer:
    """Runs `function(items) -> float32 (len(items), dim)` for many threads, one merged batch at a time.

    Args:
        function: the batch function (e.g. a model's encode); its rows must follow its items' order.
        max_items: most items merged into one call (a caller's own items are never split).
    """

    def __init__(self, function: Callable[[list[Any]], np.ndarray], max_items: int = 64) -> None:
        self._function = function
        self._max_items = max_items
        self._condition = threading.Condition()
        self._queue: list[_Job] = []
        self._busy = False
        self.calls = 0  # batches run (tests and benchmarks read it)

    def __call__(self, items: Sequence[Any]) -> np.ndarray:
        job = _Job(items)
        with self._condition:
            self._queue.append(job)
            while self._busy and not job.done:
                self._condition.wait()
            if job.done:  # another thread ran it in its batch
                return self._outcome(job)
            self._busy = True
            jobs = self._take(job)
        try:
            self._run(jobs)
        finally:
            with self._condition:
                self._busy = False
                self._condition.notify_all()
        return self._outcome(job)

    def _take(self, own: _Job) -> list[_Job]:
        """The caller's job, then queued jobs (oldest first) while the batch holds at most `max_items` items."""
        taken, count = [own], len(own.items)
        for job in self._queue:
            if job is not own and count + len(job.items) <= self._max_items:
                taken.append(job)
                count += len(job.items)
        chosen = {id(job) for job in taken}
        self._queue = [job for job in self._queue if id(job) not in chosen]
        return taken

    def _run(self, jobs: list[_Job]) -> None:
        try:
            vectors = self._function([item for job in jobs for item in job.items])
            start = 0
            for job in jobs:
                job.result = vectors[start : start + len(job.items)]
                start += len(job.items)
        except BaseException as e:  # every caller of the batch sees the error
            for job in jobs:
                job.error = e
        self.calls += 1
        for job in jobs:
            job.done = True

    @staticmethod
    def _outcome(job: _Job) -> np.ndarray:
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]
