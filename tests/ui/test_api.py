"""The HTTP API in process (FastAPI TestClient) over real VQA-RAD collections: every route, its 4xx cases,
API keys, upload limits, pagination, concurrency and the OpenAPI schema."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.ui.conftest import DEFAULT_RECORDS, IMAGES_COLLECTION, IU_REPORTS, VQA_RECORDS, make_settings
from ui.api import ApiSettings, create_app

KEY = "test-key-123"
AUTH = {"X-API-Key": KEY}
LIMIT = 300_000  # max_upload_bytes in these tests
HIT_FIELDS = {
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


def api_settings(**overrides) -> ApiSettings:
    values = {"api_key": KEY, "reads_require_key": False, "max_upload_bytes": LIMIT, "cors_origins": []}
    return ApiSettings(**{**values, **overrides})


@pytest.fixture(scope="module")
def client(ui_home: Path, workspace_factory):
    app = create_app(make_settings(ui_home), api_settings(), web=False, workspace_factory=workspace_factory)
    with TestClient(app) as client:
        yield client


def image_bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def png_bytes(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, 128).save(buffer, format="PNG")
    return buffer.getvalue()


def search(client: TestClient, **body):
    return client.post("/search", json=body)


# ---------------------------------------------------------------------- system, collections, OpenAPI
def test_health_and_index(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["collections"] == 2
    assert client.get("/").json()["docs"] == "/docs"


def test_openapi_schema_and_docs(client):
    schema = client.get("/openapi.json").json()
    assert {
        "/health",
        "/collections",
        "/collections/{name}",
        "/collections/{name}/records",
        "/search",
        "/records/{record_id}",
        "/records/{record_id}/image",
        "/ingest",
    } <= set(schema["paths"])
    body = schema["paths"]["/search"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert {"SearchQuery", "RangeSpec", "HitOut"} <= set(schema["components"]["schemas"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_collections_list_stats(client):
    collections = {c["name"]: c for c in client.get("/collections").json()["collections"]}
    assert collections["default"]["records"] == DEFAULT_RECORDS
    assert collections["default"]["by_source"] == {"vqa-rad": VQA_RECORDS, "iu-xray": IU_REPORTS}
    assert collections["default"]["by_kind"] == {"image+text": VQA_RECORDS, "report": IU_REPORTS}
    assert set(collections["default"]["spaces"]) == {"text"}
    assert set(collections[IMAGES_COLLECTION]["spaces"]) == {"clip"}


def test_collection_detail_has_facets(client):
    detail = client.get("/collections/default").json()
    assert set(detail["facets"]["modality"]) >= {"CT", "MR", "XR"}
    assert (
        "head" in detail["facets"]["body_part"] and VQA_RECORDS < detail["vectors"]["text"] <= DEFAULT_RECORDS
    )


def test_collection_records_pages(client):
    first = client.get("/collections/default/records", params={"limit": 7}).json()
    second = client.get("/collections/default/records", params={"limit": 7, "offset": 7}).json()
    assert first["total"] == DEFAULT_RECORDS and first["next_offset"] == 7 and len(first["records"]) == 7
    ids = [r["id"] for r in first["records"] + second["records"]]
    assert len(set(ids)) == 14 and ids == sorted(ids)
    last = client.get(
        "/collections/default/records", params={"limit": 10, "offset": DEFAULT_RECORDS - 5}
    ).json()
    assert len(last["records"]) == 5 and last["next_offset"] is None
    heads = client.get(
        "/collections/default/records", params={"filter": "body_part=head", "limit": 1000}
    ).json()
    assert 0 < heads["total"] < DEFAULT_RECORDS and all(r["body_part"] == "head" for r in heads["records"])


# ---------------------------------------------------------------------- search
def test_search_returns_design_hits(client):
    response = search(client, text="brain hemorrhage", k=5)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["collection"] == "default" and len(page["hits"]) == 5 and page["next_offset"] == 5
    for hit in page["hits"]:
        assert HIT_FIELDS <= set(hit) and hit["image_url"] == f"/records/{hit['id']}/image?collection=default"
        assert set(hit["why"]["ranks"]) <= {"keyword", "dense:text"}
    assert [h["score"] for h in page["hits"]] == sorted((h["score"] for h in page["hits"]), reverse=True)


def test_report_hits_carry_concepts_with_negation(client):
    hits = search(client, text="pleural effusion", k=10, filters={"source": "iu-xray"}).json()["hits"]
    assert hits and all(
        h["kind"] == "report" and h["image_path"] is None and h["image_url"] is None for h in hits
    )
    concepts = [c for h in hits for c in h["concepts"]]
    negated = [c for c in concepts if c.get("negated") is True or c.get("polarity") == "negated"]
    assert negated, concepts  # IU X-ray reports mostly say "no pleural effusion"


def test_search_pages_concatenate(client):
    whole = [h["id"] for h in search(client, text="lung nodule", k=10).json()["hits"]]
    first = [h["id"] for h in search(client, text="lung nodule", k=5).json()["hits"]]
    second = search(client, text="lung nodule", k=5, offset=5).json()
    assert first + [h["id"] for h in second["hits"]] == whole and second["offset"] == 5


@pytest.mark.parametrize(
    "filters",
    [{"body_part": "head", "modality": ["CT", "MR"]}, ["body_part=head", "modality=CT,MR"]],
    ids=["dict", "cli-expressions"],
)
def test_search_filters(client, filters):
    hits = search(client, text="mass", k=10, filters=filters).json()["hits"]
    assert hits and all(h["body_part"] == "head" and h["modality"] in ("CT", "MR") for h in hits)


def test_search_form_text_with_filter(client):
    form = {"text": "fracture", "k": "3", "mode": "keyword", "filter": ["body_part=chest"]}
    response = client.post("/search", data=form)  # url-encoded, like curl -d
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert 0 < len(hits) <= 3 and all(
        h["body_part"] == "chest" and "fracture" in h["why"]["matched_terms"] for h in hits
    )


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"text": "x", "filters": {"colour": "red"}}, 400, "colour"),
        ({"text": "x", "filters": ["modality~CT"]}, 400, "modality~CT"),
        ({"text": "x", "filters": {"age": {"gte": 1, "between": 2}}}, 422, "between"),
        ({"text": "x", "collection": "nope"}, 404, "nope"),
        ({"text": "x", "collection": "../etc"}, 422, "collection"),
        ({"text": "x", "mode": "fuzzy"}, 422, "mode"),
        ({"text": "x", "k": 0}, 422, "k"),
        ({"text": "x", "k": 100, "offset": 950}, 422, "offset + k"),
        ({"text": "x", "colour": "red"}, 422, "colour"),
        ({"text": "   "}, 400, "empty query"),
        ({"text": "x", "space": "clip"}, 400, "clip"),
        ({"image": "not base64!"}, 400, "base64"),
    ],
)
def test_search_errors_name_the_problem(client, body, status, names):
    response = search(client, **body)
    assert response.status_code == status, response.text
    assert names in str(response.json()["detail"])


def test_search_body_must_be_json_or_multipart(client):
    assert (
        client.post("/search", content=b"text=x", headers={"content-type": "text/plain"}).status_code == 415
    )
    bad = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["type"] == "json_invalid"


# ---------------------------------------------------------------------- image queries
def test_image_query_needs_an_image_space(client, shared_data):
    data = image_bytes(next((shared_data / "vqa-rad" / "images").glob("*.jpg")))
    as_json = search(client, image=base64.b64encode(data).decode())
    as_upload = client.post("/search", files={"image": ("q.jpg", data, "image/jpeg")})
    for response in (as_json, as_upload):
        assert response.status_code == 400, response.text
        assert "no image space" in response.json()["detail"] and response.json()["error"] == "QueryError"


def test_image_query_finds_the_same_image(client):
    record = client.get("/collections/images/records", params={"limit": 1, "offset": 17}).json()["records"][0]
    data = image_bytes(record["image_path"])
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    by_json = search(client, image=url, k=3, collection=IMAGES_COLLECTION).json()
    by_upload = client.post(
        "/search",
        data={"collection": IMAGES_COLLECTION, "k": "3"},
        files={"image": ("q.jpg", data, "image/jpeg")},
    ).json()
    for page in (by_json, by_upload):
        assert page["hits"][0]["id"] == record["id"] and page["hits"][0]["why"]["spaces"] == ["clip"]
        assert page["hits"][0]["score"] > 0.999


def test_unreadable_and_oversized_images(client):
    corrupt = search(client, image=base64.b64encode(png_bytes()[:40]).decode(), collection=IMAGES_COLLECTION)
    assert corrupt.status_code == 400 and "unreadable image" in corrupt.json()["detail"]
    upload = client.post("/search", files={"image": ("big.bin", b"\0" * (LIMIT + 1), "image/png")})
    assert upload.status_code == 413 and "big.bin" in upload.json()["detail"]
    as_json = search(client, image=base64.b64encode(b"\0" * (LIMIT + 10)).decode())
    assert as_json.status_code == 413 and str(LIMIT) in as_json.json()["detail"]
    huge_body = client.post(
        "/search", content=b"x" * (2 * LIMIT), headers={"content-type": "application/json"}
    )
    assert huge_body.status_code == 413


# ---------------------------------------------------------------------- records
def test_record_and_its_image(client, shared_data):
    hit = search(client, text="pneumothorax", k=1).json()["hits"][0]
    record = client.get(f"/records/{hit['id']}").json()
    assert record["id"] == hit["id"] and record["qa"] and record["text"] == hit["text"]
    image = client.get(hit["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == Path(hit["image_path"]).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/records/vqa-rad:nope",
        "/records/vqa-rad:nope/image",
        "/records/..%2F..%2F..%2Fetc%2Fpasswd/image",
        "/records/%2Fetc%2Fpasswd/image",
        "/records/vqa-rad:synpic100176.jpg%2F..%2F..%2Fetc%2Fpasswd/image",
    ],
)
def test_unknown_records_and_path_traversal_are_404(client, path):
    response = client.get(path)
    assert response.status_code == 404 and "no record" in response.json()["detail"]


def test_report_without_image_has_no_image_route(client):
    report = client.get("/collections/default/records", params={"filter": "kind=report", "limit": 1}).json()
    record = report["records"][0]
    assert record["image_url"] is None and (record["findings"] or record["impression"])
    response = client.get(f"/records/{record['id']}/image")
    assert response.status_code == 404 and "has no image" in response.json()["detail"]


def test_collection_parameter_cannot_traverse(client):
    response = client.get("/records/vqa-rad:x", params={"collection": "../../etc"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "collection"]


# ---------------------------------------------------------------------- writes
def test_writes_need_the_key(client, image_folder):
    body = {"dataset": "folder", "path": str(image_folder), "collection": "uploads"}
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        for response in (
            client.post("/ingest", json=body, headers=headers),
            client.delete("/records/x", headers=headers),
        ):
            assert response.status_code == 401 and "API key" in response.json()["detail"]
    assert "uploads" not in client.get("/collections").text


def test_ingest_search_delete(client, image_folder):
    body = {"dataset": "folder", "path": str(image_folder), "collection": "uploads"}
    summary = client.post("/ingest", json=body, headers=AUTH).json()
    assert summary["collection"] == "uploads" and summary["added"] == 3 and summary["failed_images"] == 0
    assert client.post("/ingest", json=body, headers=AUTH).json()["already_present"] == 3
    hits = search(client, text="test scan chest", collection="uploads").json()["hits"]
    record_id = hits[0]["id"]
    assert record_id.startswith("folder:upl/scans/") and len(hits) == 3
    assert client.get(f"/records/{record_id}/image", params={"collection": "uploads"}).status_code == 200
    bearer = {"Authorization": f"Bearer {KEY}"}
    deleted = client.delete(f"/records/{record_id}", params={"collection": "uploads"}, headers=bearer)
    assert deleted.json() == {"collection": "uploads", "id": record_id, "deleted": 1}
    assert client.get(f"/records/{record_id}", params={"collection": "uploads"}).status_code == 404
    again = client.delete(f"/records/{record_id}", params={"collection": "uploads"}, headers=AUTH)
    assert again.status_code == 404
    assert len(search(client, text="test scan chest", collection="uploads").json()["hits"]) == 2


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"dataset": "pacs", "path": "/tmp"}, 422, "vqa-rad"),
        ({"dataset": "os:system", "path": "/tmp"}, 422, "unknown dataset"),
        ({"dataset": "folder", "path": "/no/such/folder"}, 400, "/no/such/folder"),
        ({"dataset": "folder", "path": "/tmp", "collection": "a/b"}, 422, "collection"),
        ({"dataset": "folder"}, 422, "path"),
    ],
)
def test_ingest_validation(client, body, status, names):
    response = client.post("/ingest", json=body, headers=AUTH)
    assert response.status_code == status and names in str(response.json()["detail"])


def test_writes_disabled_without_a_key_and_reads_closable(ui_home, workspace_factory):
    settings = make_settings(ui_home)
    no_key = create_app(settings, api_settings(api_key=None), web=False, workspace_factory=workspace_factory)
    with TestClient(no_key) as client:
        response = client.delete("/records/x", headers=AUTH)
        assert response.status_code == 403 and "MEDSEARCH_API_KEY" in response.json()["detail"]
    closed = create_app(
        settings, api_settings(reads_require_key=True), web=False, workspace_factory=workspace_factory
    )
    with TestClient(closed) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/collections").status_code == 401
        assert search(client, text="x").status_code == 401
        assert client.get("/collections", headers=AUTH).status_code == 200
    with pytest.raises(ValueError, match="MEDSEARCH_API_KEY"):
        api_settings(api_key=None, reads_require_key=True)


def test_cors_is_off_by_default_and_configurable(ui_home):
    preflight = {"Origin": "https://viewer.example", "Access-Control-Request-Method": "POST"}
    settings = make_settings(ui_home)
    closed = TestClient(create_app(settings, api_settings(), web=False))
    assert "access-control-allow-origin" not in closed.options("/search", headers=preflight).headers
    opened = TestClient(
        create_app(settings, api_settings(cors_origins=["https://viewer.example"]), web=False)
    )
    response = opened.options("/search", headers=preflight)
    assert response.headers["access-control-allow-origin"] == "https://viewer.example"


def test_unexpected_errors_are_json_500(client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("ui.api.routers.collections.facet_counts", broken)
    response = TestClient(client.app, raise_server_exceptions=False).get("/collections/default")
    assert response.status_code == 500 and response.json()["error"] == "InternalServerError"
    assert "secret" not in response.text


# ---------------------------------------------------------------------- concurrency
def test_concurrent_requests_match_sequential_results(client, image_folder):
    """Searches from 6 threads while an ingest and a delete run: same hits as one at a time, no errors."""
    queries = ["brain hemorrhage", "pleural effusion", "kidney", "fracture", "liver lesion", "cardiomegaly"]

    def run(query: str) -> list[str]:
        response = search(client, text=query, k=5, filters={"modality": ["CT", "MR", "XR"]})
        assert response.status_code == 200, response.text
        assert client.get("/collections/default").status_code == 200
        return [h["id"] for h in response.json()["hits"]]

    def write() -> int:
        body = {"dataset": "folder", "path": str(image_folder), "collection": "concurrent"}
        added = client.post("/ingest", json=body, headers=AUTH).json()["added"]
        some = client.get("/collections/concurrent/records", params={"limit": 1}).json()["records"][0]["id"]
        client.delete(
            f"/records/{some}", params={"collection": "concurrent"}, headers=AUTH
        ).raise_for_status()
        return added

    expected = [run(q) for q in queries]
    with ThreadPoolExecutor(max_workers=6) as pool:
        writer = pool.submit(write)
        results = list(pool.map(run, queries * 3))
    assert results == expected * 3 and writer.result() == 3
    assert client.get("/collections/concurrent").json()["records"] == 2


def test_concepts_find_and_card(client):
    found = client.get("/concepts", params={"q": "enlarged heart"})
    assert found.status_code == 200
    body = found.json()
    assert body["mentions"][0]["name"] == "cardiomegaly" and body["mentions"][0]["negated"] is False
    card = client.get("/concepts/pleural effusion").json()
    assert card["name"] == "pleural effusion" and card["parents"]
    assert card["records"]["negated"]["count"] > 0  # IU reports that say "no pleural effusion"
    by_xref = client.get("/concepts/MESH:D006332")
    assert by_xref.status_code == 200 and by_xref.json()["name"] == "cardiomegaly"


def test_unknown_concept_is_404_with_suggestions(client):
    response = client.get("/concepts/pleural efusion")
    assert response.status_code == 404 and "pleural" in response.json()["detail"]
