"""UI fixtures: a home with real collections ingested once per session, and a Workspace factory that reuses the
encoders loaded once (MiniLM for text, a raw-pixel encoder standing in for a trained image space)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
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


def make_settings(home: Path) -> Settings:
    """Settings for a test home: no shared data folder (the session's knowledge graph is handed in)."""
    return Settings(home=home, data=None)


@pytest.fixture(scope="session")
def ui_minilm():
    from engine.encoders import create

    return create("minilm")


@pytest.fixture(scope="session")
def workspace_factory(ui_minilm, knowledge) -> Callable[[Settings], Workspace]:
    """Builds Workspaces that already hold the session's encoders and knowledge graph (no reload per app)."""
    pixels = PixelEncoder()

    def factory(settings: Settings) -> Workspace:
        workspace = Workspace(settings)
        workspace._encoders.update({"minilm": ui_minilm, pixels.name: pixels})
        workspace._knowledge = knowledge
        return workspace

    return factory


@pytest.fixture(scope="session")
def ui_home(tmp_path_factory, shared_data: Path, workspace_factory) -> Path:
    """A home holding `default` (VQA_RECORDS VQA-RAD images with their QA text and IU_REPORTS IU X-ray reports,
    MiniLM text space, concepts from the knowledge graph's linker) and `images` (40 VQA-RAD images, raw-pixel image space)."""
    from engine import datasets
    from engine.ingest import ingest_records

    home = tmp_path_factory.mktemp("ui-home")
    records = datasets.load("vqa-rad", shared_data / "vqa-rad")
    reports = datasets.load("iu-xray", shared_data / "iu-xray")[:IU_REPORTS]
    with workspace_factory(make_settings(home)) as workspace:
        text = {"text": workspace.encoder("minilm")}
        default = workspace.collection(create=True)
        linker = workspace.knowledge().link_records
        ingest_records(default, records[:VQA_RECORDS], text, source="vqa-rad", linker=linker, progress=False)
        ingest_records(default, reports, text, source="iu-xray", linker=linker, progress=False)
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


@pytest.fixture(scope="session")
def vqa_model(ui_home: Path, ui_minilm, shared_data: Path) -> Path:
    """A question-only VQA model (MiniLM; no image space in this home) fitted on the train questions of the
    `default` collection's VQA-RAD images, saved where `medsearch train vqa` puts it: <ui_home>/models/vqa."""
    from engine import datasets
    from engine.vqa import vqa_items
    from engine.vqa.service import VqaService

    records = datasets.load("vqa-rad", shared_data / "vqa-rad")[:VQA_RECORDS]
    items = [item for item in vqa_items(records, "vqa-rad") if item.split == "train"]
    service = VqaService.fit(items, ui_minilm, {}, {"text": "minilm"}, k=5)
    return service.save(ui_home / "models" / "vqa")
