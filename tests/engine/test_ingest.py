"""Ingest: real dataset folders, unreadable images skipped and counted, idempotent re-ingest, crash safety."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.collection import Collection
from engine.errors import DatasetFormatError, ImageReadError
from engine.ingest import load_image
from engine.workspace import Workspace
from tests.engine.conftest import make_settings


@pytest.fixture
def workspace(tmp_path, minilm):
    ws = Workspace(make_settings(tmp_path / "home"))
    ws._encoders["minilm"] = minilm  # reuse the session's loaded model
    yield ws
    ws.close()


def test_ingest_skips_corrupt_image_and_is_idempotent(workspace, mini_vqa_rad):
    summary = workspace.ingest("vqa-rad", mini_vqa_rad, progress=False)
    assert summary.total == 4
    assert summary.added == 3
    assert len(summary.failed) == 1
    path, reason = summary.failed[0]
    assert path.endswith("synpic99999.jpg") and "unreadable" in reason
    again = workspace.ingest("vqa-rad", mini_vqa_rad, progress=False)
    assert again.added == 0 and again.already_present == 3
    collection = workspace.collection()
    assert collection.count() == 3
    assert collection.index("text").count() == 3


def test_wrong_format_writes_nothing(workspace, tmp_path):
    folder = tmp_path / "not-vqa"
    (folder / "images").mkdir(parents=True)
    (folder / "trainset.json").write_text("{broken")
    with pytest.raises(DatasetFormatError, match="trainset.json"):
        workspace.ingest("vqa-rad", folder, progress=False)
    assert not (workspace.settings.home / "collections").exists()


def test_load_image_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png"):
        load_image(empty)
    with pytest.raises(ImageReadError, match="file not found"):
        load_image(tmp_path / "absent.jpg")


def _count(db_path: Path) -> int:
    try:
        with sqlite3.connect(db_path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.fixture
def mini_iu_xray(tmp_path: Path, shared_data: Path) -> Path:
    """An IU X-ray-format folder with the first 800 shared reports (the other two files as they are)."""
    folder = tmp_path / "iu-mini"
    folder.mkdir()
    source = shared_data / "iu-xray"
    lines = (source / "indiana_reports.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    import csv
    import io

    rows = list(csv.reader(io.StringIO("".join(lines))))[: 1 + 800]
    with open(folder / "indiana_reports.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    for name in ("indiana_projections.csv", "annotation_r2gen.json"):
        shutil.copy(source / name, folder / name)
    return folder


def test_kill_during_ingest_loses_at_most_the_batch_in_flight(tmp_path, mini_iu_xray):
    """SIGKILL an ingest mid-way: the collection opens, SQLite and the index agree, a re-run adds the rest once."""
    home = tmp_path / "home"
    env = {**os.environ, "MEDSEARCH_HOME": str(home), "MEDSEARCH_INGEST_BATCH_SIZE": "32"}
    command = [sys.executable, "-m", "ui.cli", "ingest", "iu-xray", str(mini_iu_xray)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db_path = home / "collections" / "default" / "records.sqlite"
    deadline = time.time() + 240
    while time.time() < deadline and _count(db_path) < 160 and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = _count(db_path)
    assert 0 < partial < 800, "the ingest should have been killed mid-way"
    assert partial % 32 == 0, "only whole batches are committed"
    with Collection.open(home, "default") as collection:
        assert collection.count() == partial
        assert collection.index("text").count() == collection.vector_count("text") > 0.99 * partial
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with Collection.open(home, "default") as collection:
        assert collection.count() == 800
        assert collection.index("text").count() == collection.vector_count("text") > 790
        assert collection.keyword_index().count() == collection.vector_count("text")  # the records with text
