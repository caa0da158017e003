"""Crash safety: SIGKILL an ingest at named points, per backend; the collection opens, SQLite and every index
agree, and re-running the ingest completes with no duplicates.

The child (`tests/reliability/crash_child.py`) ingests 60 synthetic reports in batches of 8 with a hashed
bag-of-words encoder, so a run takes a second or two. Kill points are deterministic (the child wraps the real
code path and SIGKILLs itself there). FAISS covers every point in the default suite, Qdrant (embedded) one
point there; Qdrant and Milvus Lite (whose server takes seconds to start per process) cover every point under
`-m slow`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from engine.collection import Collection
from tests.reliability.crash_child import POINTS
from tests.reliability.tiny import register_hash_encoder, synthetic_reports

REPO = Path(__file__).resolve().parents[2]
COUNT, BATCH, NTH = 60, 8, 3
# records committed when the child dies at each point (the 3rd batch, or the 1st index/keyword write)
COMMITTED = {
    "mid-commit": (NTH - 1) * BATCH,
    "between-batches": NTH * BATCH,
    "index-write": COUNT,
    "index-save": COUNT,
    "before-watermark": COUNT,
    "keyword-save": COUNT,
}
FAST_POINTS = {"faiss": sorted(POINTS), "qdrant": ["index-write"], "milvus": []}  # Milvus Lite: slow only


def run_child(
    home: Path, backend: str, point: str = "none", check: int | None = None, count: int = COUNT
) -> int:
    """Run the child to its end (or its self-kill); kill what it left behind (a Milvus Lite server)."""
    nth = NTH if point in ("mid-commit", "between-batches") else 1
    command = [sys.executable, "-m", "tests.reliability.crash_child", str(home), backend]
    command += ["--point", point, "--nth", str(nth), "--count", str(count), "--batch-size", str(BATCH)]
    if check is not None:
        command += ["--check", str(check)]
    process = subprocess.Popen(
        command, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the child's own session: only what it started
        except ProcessLookupError:
            pass
    if point == "none":
        assert process.returncode == 0, stderr.decode()[-3000:]
    return process.returncode


def check_home(home: Path, backend: str, expected: int) -> None:
    """`check_consistent` here, or in a child for Milvus Lite (whose server lives as long as the opener)."""
    if backend == "milvus":
        run_child(home, backend, check=expected)
    else:
        check_consistent(home, expected)


def check_consistent(home: Path, expected: int) -> None:
    """The collection opens; SQLite holds `expected` records; every index and BM25 hold exactly those."""
    with Collection.open(home, "default") as collection:
        assert collection.count() == expected
        ids = {r.id for batch in collection.iter_records() for r in batch}
        assert ids == {r.id for r in synthetic_reports(expected)}  # whole batches, in order
        index = collection.index("text")
        assert index.count() == collection.vector_count("text") == expected
        keyword = collection.keyword_index()
        assert keyword.count() == expected
        if expected:
            probe = synthetic_reports(1, start=expected - 1)[0]
            vector = register_hash_encoder().encode_texts([probe.text()])
            found, scores = index.search(vector, k=3)
            assert found[0][0] == probe.id and scores[0][0] > 0.999
            assert set(found[0]) <= ids | {""}
            top = keyword.search([probe.text()], k=1)
            assert list(np.ravel(top[0]))[0] == probe.id


def run_points(tmp_path: Path, backend: str, points: list[str]) -> None:
    pytest.importorskip({"faiss": "faiss", "qdrant": "qdrant_client", "milvus": "pymilvus"}[backend])
    register_hash_encoder()
    homes = {point: tmp_path / point for point in points}
    with ThreadPoolExecutor(max_workers=2) as pool:  # two children at a time (2 cores)
        killed = list(pool.map(lambda p: run_child(homes[p], backend, p), points))
        assert killed == [-signal.SIGKILL] * len(points), dict(zip(points, killed))
        for point in points:
            check_home(homes[point], backend, COMMITTED[point])
        list(pool.map(lambda p: run_child(homes[p], backend), points))  # the same ingest again, to its end
    for point in points:
        check_home(homes[point], backend, COUNT)


@pytest.mark.parametrize("backend", [name for name, points in sorted(FAST_POINTS.items()) if points])
def test_kill_at_each_point_then_reingest(tmp_path, backend):
    run_points(tmp_path, backend, FAST_POINTS[backend])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["qdrant", "milvus"])
def test_kill_at_every_point_server_backends(tmp_path, backend):
    run_points(tmp_path, backend, [p for p in sorted(POINTS) if p not in FAST_POINTS[backend]])


@pytest.mark.slow
def test_repeated_crashes_in_one_home(tmp_path):
    """Three kills in a row at different points of one home (each run asks for 20 more records), then a clean
    run: every kill keeps what was committed before it, and the end state is whole."""
    register_hash_encoder()
    home = tmp_path / "home"
    # (point, records asked for, records stored after the kill): mid-commit loses its 3rd batch of 8
    for point, count, stored in (("index-write", 20, 20), ("mid-commit", 40, 36), ("keyword-save", 60, 60)):
        assert run_child(home, "faiss", point, count=count) == -signal.SIGKILL
        with Collection.open(home, "default") as collection:
            assert collection.count() == stored
            assert collection.index("text").count() == collection.vector_count("text") == stored
    run_child(home, "faiss")
    check_consistent(home, COUNT)
