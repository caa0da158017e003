"""`POST /ask`: JSON (base64 image) and multipart upload, citations linked to the collection's images, checked
phrasing by the server's generator, and clean 4xx/503 errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.settings import Settings
from ui.api import create_app
from ui.api.settings import ApiSettings


@pytest.fixture(scope="module")
def client(ui_home: Path, vqa_model: Path, workspace_factory):
    settings = Settings(home=ui_home, data=None, generator="extractive")
    app = create_app(settings, ApiSettings(), web=False, workspace_factory=workspace_factory)
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def image_path(shared_data: Path) -> Path:
    return sorted((shared_data / "vqa-rad" / "images").glob("*.jpg"))[0]


def test_ask_json_answers_with_citations_that_link_to_images(client: TestClient, image_path: Path):
    payload = {
        "question": "Is there a pneumothorax?",
        "image": base64.b64encode(image_path.read_bytes()).decode(),
    }
    response = client.post("/ask", json=payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] in {"yes", "no"} and body["answer_type"] == "CLOSED"
    assert 0 <= body["confidence"] <= 1 and body["citations"] and body["sentence"] is None
    for citation in body["citations"]:
        assert citation["record_id"].startswith("vqa-rad:") and citation["question"]
        assert citation["image_url"], "cited VQA-RAD records are in the default collection"
        assert citation["supports"] == (citation["answer"] == body["answer"])
    image = client.get(body["citations"][0]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")


def test_ask_multipart_upload_and_phrase(client: TestClient, image_path: Path):
    with image_path.open("rb") as handle:
        response = client.post(
            "/ask",
            data={"question": "What organ is shown?", "phrase": "true"},
            files={"image": (image_path.name, handle, "image/jpeg")},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer_type"] == "OPEN" and body["answer"]
    assert body["sentence"] and body["phrased_by"] in {"extractive", "template"}
    if body["phrased_by"] == "template":
        assert "[1]" in body["sentence"]


@pytest.mark.parametrize(
    ("payload", "status", "needle"),
    [
        ({"question": ""}, 422, "question"),
        ({"question": "x" * 5000}, 422, "question"),
        ({"question": "Is it?", "image": "%%% not base64"}, 400, "base64"),
        ({"question": "Is it?", "image": base64.b64encode(b"not an image").decode()}, 400, "image"),
    ],
)
def test_ask_bad_input_gets_a_clear_4xx(client: TestClient, payload: dict, status: int, needle: str):
    response = client.post("/ask", json=payload)
    assert response.status_code == status, response.text
    assert needle in response.text.lower()


def test_ask_without_a_trained_model_is_503_naming_the_command(tmp_path: Path, workspace_factory):
    app = create_app(
        Settings(home=tmp_path, data=None), ApiSettings(), web=False, workspace_factory=workspace_factory
    )
    with TestClient(app) as client:
        response = client.post("/ask", json={"question": "Is there an effusion?"})
    assert response.status_code == 503 and "medsearch train vqa" in response.json()["detail"]
    assert str(tmp_path) not in response.text  # no server paths in answers


def test_ask_is_in_the_openapi_schema(client: TestClient):
    schema = client.get("/openapi.json").json()
    assert "/ask" in schema["paths"] and "post" in schema["paths"]["/ask"]
