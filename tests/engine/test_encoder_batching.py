"""`Coalescer`: concurrent callers share batches, get their own rows back, never run the function twice at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.encoders.batching import Coalescer


class SlowEncoder:
    """Rows = [len(text), index of the call]; sleeps so that callers pile up; records concurrent use."""

    def __init__(self) -> None:
        self.inside = 0
        self.overlapped = False
        self.sizes: list[int] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.inside += 1
        self.overlapped |= self.inside > 1
        time.sleep(0.05)
        self.sizes.append(len(texts))
        self.inside -= 1
        return np.array([[len(t), len(self.sizes)] for t in texts], dtype=np.float32)


def test_concurrent_callers_share_batches_and_get_their_rows():
    encoder = SlowEncoder()
    batches = Coalescer(encoder, max_items=64)
    texts = [["a" * (i + 1), "b" * (i + 101)] for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(batches, texts))
    for mine, rows in zip(texts, results):
        assert rows[:, 0].tolist() == [len(t) for t in mine]
    assert not encoder.overlapped
    assert batches.calls < len(texts) and sum(encoder.sizes) == 40  # merged, nothing encoded twice


def test_max_items_and_lone_caller():
    encoder = SlowEncoder()
    batches = Coalescer(encoder, max_items=4)
    assert batches(["x"]).shape == (1, 2) and encoder.sizes == [1]
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(batches, [["ab", "cd", "ef"]] * 10))
    assert encoder.sizes[1:] == [3] * 10  # 3 + 3 > max_items: never merged, never split


def test_errors_reach_every_caller_of_the_batch():
    gate = threading.Event()

    def failing(texts: list[str]) -> np.ndarray:
        gate.wait(1)
        raise ValueError("model exploded")

    batches = Coalescer(failing)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(batches, ["t"]) for _ in range(4)]
        time.sleep(0.05)
        gate.set()
    for future in futures:
        with pytest.raises(ValueError, match="exploded"):
            future.result()
