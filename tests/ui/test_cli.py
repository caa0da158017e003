"""The `medsearch` CLI contract: ingest, search (--json), search-batch, collections, delete, and clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ui.cli import main

DESIGN_HIT_FIELDS = {
    "id",
    "score",
    "kind",
    "source",
    "text",
    "image_path",
    "modality",
    "body_part",
    "concepts",
    "why",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory, shared_data):
    """A home with the VQA-RAD collection ingested once through the CLI (in a subprocess, like a user)."""
    home = tmp_path_factory.mktemp("cli-home")
    env = {**os.environ, "MEDSEARCH_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "ui.cli", "ingest", "vqa-rad", str(shared_data / "vqa-rad"), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["added"] == 315 and summary["failed_images"] == 0
    return home


def run(capsys, home, *argv):
    code = main(["--home", str(home), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_search_json_fields_and_filters(capsys, home):
    code, out, _ = run(
        capsys, home, "search", "brain hemorrhage", "--k", "5", "--json", "--filter", "body_part=head"
    )
    assert code == 0
    hits = json.loads(out)
    assert len(hits) == 5
    assert all(DESIGN_HIT_FIELDS <= set(h) and h["body_part"] == "head" for h in hits)
    assert all(h["image_path"].endswith(".jpg") for h in hits)


def test_search_batch_roundtrip(capsys, home, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"qid": 1, "text": "pneumothorax"}\n{"qid": "b", "text": "kidney"}\n')
    output = tmp_path / "hits.jsonl"
    code, _, _ = run(
        capsys, home, "search-batch", "--input", str(queries), "--output", str(output), "--k", "3"
    )
    assert code == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["qid"] for line in lines] == [1, "b"]
    assert all(len(line["hits"]) == 3 and set(line["hits"][0]) == {"id", "score"} for line in lines)


def test_search_batch_bad_line_names_file_and_line(capsys, home, tmp_path):
    queries = tmp_path / "bad.jsonl"
    queries.write_text('{"qid": 1, "text": "ok"}\nnot json\n')
    code, _, err = run(capsys, home, "search-batch", "--input", str(queries), "--output", str(tmp_path / "o"))
    assert code == 2 and "bad.jsonl:2" in err
    assert not (tmp_path / "o").exists()


def test_collections_and_delete(capsys, home):
    code, out, _ = run(capsys, home, "collections", "--json")
    assert code == 0
    [stats] = json.loads(out)
    assert stats["records"] == 315 and stats["by_source"] == {"vqa-rad": 315}
    code, out, _ = run(capsys, home, "delete", "vqa-rad:synpic35356")
    assert code == 0 and "deleted 1" in out
    code, out, _ = run(capsys, home, "search", "x", "--json", "--k", "400", "--mode", "keyword")
    assert "vqa-rad:synpic35356" not in {h["id"] for h in json.loads(out)}
    code, _, _ = run(capsys, home, "delete", "vqa-rad:synpic35356")
    assert code == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "x", "--filter", "modality"], "modality"),
        (["search", "x", "--collection", "nope"], "no collection 'nope'"),
        (["search"], "give query text"),
    ],
)
def test_errors_are_clean(capsys, home, argv, message):
    code, _, err = run(capsys, home, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_ingest_missing_folder_fails_cleanly(capsys, tmp_path):
    code, _, err = run(capsys, tmp_path, "ingest", "slake", str(tmp_path / "absent"))
    assert code == 2 and "absent" in err
    assert not (tmp_path / "collections").exists()
