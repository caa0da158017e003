"""UI fixtures: a home with real collections ingested once per session, and a Workspace factory that reuses the
encoders loaded once (MiniLM for text, a raw-pixel encoder standing in for a trained image space)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from engine.encoders.base import l2_normalise
from engine.settings import Settings
from engine.workspace import Workspace

VQA_RECORDS = (
    120  # VQA-RAD image+text records in the `default` collection (deterministic slices keep tests fast)
)
IU_REPORTS = 40  # IU X-ray reports (no image) in the `default` collection
DEFAULT_RECORDS = VQA_RECORDS + IU_REPORTS
IMAGES_COLLECTION = "images"  # 40 VQA-RAD images in an image ("clip") space only


class PixelEncoder:
    """Image-only test encoder: 16x16 grey thumbnails, mean-centred, as float32 (n, 256) unit rows.

    Raw pixels find the same image (and loosely similar ones); enough to test the image-query path end to end.
    """

    name = "test-pixels"
    dim = 256
    space = "clip"
    modalities = frozenset({"image"})

    def encode_images(self, images: Sequence) -> np.ndarray:
        rows = [np.asarray(image.convert("L").resize((16, 16)), dtype=np.float32).ravel() for image in images]
        vectors = np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
        return l2_normalise(vectors - vectors.mean(axis=1, keepdims=True))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError("PixelEncoder encodes images only")


_FINDINGS = {
    "effusion": "TEST:effusion",
    "pneumothorax": "TEST:pneumothorax",
    "cardiomegaly": "TEST:cardiomegaly",
}
_NEGATION = re.compile(r"\b(no|without|negative for|free of)\b[^.]{0,40}$", re.IGNORECASE)


def keyword_linker(records: Sequence) -> Mapping[str, list[dict]]:
    """Test stand-in for the KG linker: three findings by keyword, negated after "no ..." in the same sentence,
    so stored concepts (and the web app's negated chips) can be tested without building the knowledge graph."""
    out: dict[str, list[dict]] = {}
    for record in records:
        text = record.text()
        for match in re.finditer("|".join(_FINDINGS), text, re.IGNORECASE):
            sentence_start = max(text.rfind(".", 0, match.start()), text.rfind("\n", 0, match.start())) + 1
            before = text[sentence_start : match.start()]
            out.setdefault(record.id, []).append(
                {
                    "concept_id": _FINDINGS[match.group(0).lower()],
                    "polarity": "negated" if _NEGATION.search(before) else "present",
                    "field": "text",
                    "start": match.start(),
                    "end": match.end(),
                    "sentence": text[sentence_start : match.end()].strip(),
                }
            )
    return out


def make_settings(home: Path) -> Settings:
    """Settings for a test home: no shared data folder, no knowledge graph (the API is tested, not the KG)."""
    return Settings(home=home, data=None, kg_enabled=False)


@pytest.fixture(scope="session")
def ui_minilm():
    from engine.encoders import create

    return create("minilm")


@pytest.fixture(scope="session")
def workspace_factory(ui_minilm) -> Callable[[Settings], Workspace]:
    """Builds Workspaces whose encoder cache already holds the session's encoders (no reload per app)."""
    pixels = PixelEncoder()

    def factory(settings: Settings) -> Workspace:
        workspace = Workspace(settings)
        workspace._encoders.update({"minilm": ui_minilm, pixels.name: pixels})
        return workspace

    return factory


@pytest.fixture(scope="session")
def ui_home(tmp_path_factory, shared_data: Path, workspace_factory) -> Path:
    """A home holding `default` (VQA_RECORDS VQA-RAD images with their QA text and IU_REPORTS IU X-ray reports,
    MiniLM text space, concepts from `keyword_linker`) and `images` (40 VQA-RAD images, raw-pixel image space)."""
    from engine import datasets
    from engine.ingest import ingest_records

    home = tmp_path_factory.mktemp("ui-home")
    records = datasets.load("vqa-rad", shared_data / "vqa-rad")
    reports = datasets.load("iu-xray", shared_data / "iu-xray")[:IU_REPORTS]
    with workspace_factory(make_settings(home)) as workspace:
        text = {"text": workspace.encoder("minilm")}
        default = workspace.collection(create=True)
        ingest_records(default, records[:VQA_RECORDS], text, source="vqa-rad", progress=False)
        ingest_records(default, reports, text, source="iu-xray", linker=keyword_linker, progress=False)
        pixels = {"clip": workspace.encoder(PixelEncoder.name)}
        images = workspace.collection(IMAGES_COLLECTION, create=True)
        ingest_records(images, records[:40], pixels, source="vqa-rad", progress=False)
    return home


@pytest.fixture
def image_folder(tmp_path: Path, shared_data: Path) -> Path:
    """A `folder` dataset: 3 real VQA-RAD images in a sub-folder, with a metadata.jsonl sidecar."""
    source = sorted((shared_data / "vqa-rad" / "images").glob("*.jpg"))[:3]
    folder = tmp_path / "upl"
    (folder / "scans").mkdir(parents=True)
    lines = []
    for i, path in enumerate(source):
        shutil.copy(path, folder / "scans" / path.name)
        lines.append(
            {"file_name": f"scans/{path.name}", "caption": f"test scan {i} of the chest", "modality": "CT"}
        )
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return folder
