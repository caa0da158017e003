"""Engine fixtures: the real MiniLM encoder (loaded once), small real record sets, workspaces in tmp dirs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.settings import Settings


@pytest.fixture(scope="session")
def minilm():
    from engine.encoders import create

    return create("minilm")


@pytest.fixture(scope="session")
def iu_records(shared_data: Path):
    """300 real IU X-ray reports (deterministic slice) as Records."""
    from engine.datasets import load

    return load("iu-xray", shared_data / "iu-xray")[:300]


def make_settings(home: Path, **overrides) -> Settings:
    return Settings(home=home, data=None, **overrides)


@pytest.fixture
def mini_vqa_rad(tmp_path: Path, shared_data: Path) -> Path:
    """A VQA-RAD-format folder with 3 real images, their QA, and one corrupt image that QA refers to."""
    import json

    source = shared_data / "vqa-rad"
    qa = json.loads((source / "trainset.json").read_text())
    names = sorted({item["image_name"] for item in qa})[:3]
    folder = tmp_path / "vqa-mini"
    (folder / "images").mkdir(parents=True)
    for name in names:
        shutil.copy(source / "images" / name, folder / "images" / name)
    corrupt = "synpic99999.jpg"
    (folder / "images" / corrupt).write_bytes((source / "images" / names[0]).read_bytes()[:300])
    kept = [item for item in qa if item["image_name"] in names]
    extra = dict(kept[0], qid=999999, image_name=corrupt)
    (folder / "trainset.json").write_text(json.dumps(kept + [extra]))
    return folder
