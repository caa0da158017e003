"""`medsearch ask` and `ask-batch` on a home holding a trained VQA model: answers with citations, the VQA-RAD
and SLAKE input formats, one output line per question (failures named, not fatal), clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ui.cli import main


def run(capsys, home: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--home", str(home), *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def images(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "vqa-rad" / "images").glob("*.jpg"))[:2]


def test_ask_prints_the_answer_and_its_cases(capsys, ui_home, vqa_model, images):
    code, out, err = run(
        capsys, ui_home, "ask", "--image", str(images[0]), "--question", "Is there a fracture?"
    )
    assert code == 0, err
    first, *rest = out.splitlines()
    assert first.split()[0] in {"yes", "no"} and "closed question" in first
    assert any(line.strip().startswith("[1] vqa-rad:") for line in rest)
    code, out, err = run(
        capsys,
        ui_home,
        "ask",
        "--image",
        str(images[0]),
        "--question",
        "Is there a fracture?",
        "--json",
        "--phrase",
    )
    answer = json.loads(out)
    assert answer["answer"] in {"yes", "no"} and answer["citations"] and answer["evidence"]
    assert answer["sentence"] and answer["phrased_by"] == "template" and "[1]" in answer["sentence"]


def test_ask_batch_reads_vqa_rad_and_slake_formats(capsys, ui_home, vqa_model, images, tmp_path: Path):
    rows = [
        {"qid": 1, "image_name": images[0].name, "question": "Is this a CT?"},
        {"qid": 2, "image_name": images[1].name, "question": "What organ is shown?"},
        {"qid": 3, "image_name": "missing.jpg", "question": "Is it normal?"},
        {"qid": 4, "image_name": "../../etc/passwd", "question": "Is it normal?"},
        {"qid": 5, "image_name": images[0].name, "question": "Is it normal? " * 100},
    ]
    (tmp_path / "qa.json").write_text(json.dumps(rows))
    out_file = tmp_path / "pred.jsonl"
    code, _, err = run(
        capsys, ui_home, "ask-batch", "--input", str(tmp_path / "qa.json"), "--images", str(images[0].parent),
        "--output", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [line["qid"] for line in lines] == ["1", "2", "3", "4", "5"]
    assert lines[0]["answer"] in {"yes", "no"} and lines[0]["citations"]
    assert lines[1]["answer"] and 0 <= lines[1]["confidence"] <= 1
    assert lines[2]["answer"] is None and "missing.jpg" in lines[2]["error"]
    assert lines[3]["answer"] is None and "outside the images folder" in lines[3]["error"]
    assert lines[4]["answer"] is None and "1400 characters (limit 1000)" in lines[4]["error"]
    assert "2 answered, 3 failed" in err and not out_file.with_suffix(".jsonl.tmp").exists()
    slake = [{"qid": 7, "img_name": images[0].name, "question": "Is this an MRI?"}]
    (tmp_path / "slake.json").write_text(json.dumps(slake))
    code, _, err = run(
        capsys, ui_home, "ask-batch", "--input", str(tmp_path / "slake.json"), "--images", str(images[0].parent),
        "--output", str(out_file),
    )  # fmt: skip
    assert code == 0 and json.loads(out_file.read_text())["answer"] in {"yes", "no"}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('{"qid": 1}', "JSON list"),
        ('[{"qid": 1, "question": "Is it?"}]', "image_name"),
        (
            '[{"qid": 1, "img_name": "a.jpg", "question": "Q?"}, {"qid": 1, "img_name": "b.jpg", "question": "Q?"}]',
            "more than once",
        ),
    ],
)
def test_ask_batch_bad_input_files_fail_cleanly(capsys, ui_home, tmp_path: Path, content: str, needle: str):
    (tmp_path / "qa.json").write_text(content)
    out_file = tmp_path / "pred.jsonl"
    code, _, err = run(
        capsys, ui_home, "ask-batch", "--input", str(tmp_path / "qa.json"), "--images", str(tmp_path),
        "--output", str(out_file),
    )  # fmt: skip
    assert code == 2 and needle in err and "qa.json" in err and not out_file.exists()


def test_ask_without_a_model_names_the_command(capsys, tmp_path: Path):
    code, _, err = run(capsys, tmp_path, "ask", "--question", "Is there an effusion?")
    assert code == 2 and "medsearch train vqa" in err
