"""Security checks that complete tests/ui/test_api.py: every write route (found from the app, so a new one is
covered too) refuses requests without the key, keys are compared in constant time, CORS stays off unless
configured, streamed uploads over the limit get 413, and the image route serves only image files that a
stored record names.
"""

from __future__ import annotations

import hmac
import inspect

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from engine.collection import Collection
from engine.datasets.record import Record
from tests.reliability.conftest import (
    AUTH,
    IU_REPORTS,
    KEY,
    UPLOAD_LIMIT,
    VQA_IMAGES,
    make_app,
    rel_settings,
)
from ui.api import deps


def _api_routes(routes) -> list[APIRoute]:
    """Every APIRoute, looking inside included routers (FastAPI >= 0.160 wraps them)."""
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif getattr(route, "original_router", None) is not None:
            found.extend(_api_routes(route.original_router.routes))
    return found


def _write_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route that depends on `require_write_access`."""

    def calls(dependant) -> set:
        found = {dependant.call}
        for sub in dependant.dependencies:
            found |= calls(sub)
        return found

    routes = []
    for route in _api_routes(app.routes):
        declared = {depends.dependency for depends in route.dependencies} | calls(route.dependant)
        if deps.require_write_access in declared:
            routes.extend((method, route.path.replace(":path}", "}")) for method in sorted(route.methods))
    return routes


def _first_id(client: TestClient) -> str:
    return client.get("/collections/default/records", params={"limit": 1}).json()["records"][0]["id"]


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]):
    url = path.replace("{record_id}", _first_id(client))
    body = {"dataset": "folder", "path": "/nonexistent"} if method == "POST" else None
    return client.request(method, url, json=body, headers=headers)


def test_every_write_route_needs_the_key(api_client):
    writes = _write_routes(api_client.app)
    assert {("POST", "/ingest"), ("DELETE", "/records/{record_id}")} <= set(writes)
    wrong = [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY[:-1]}]
    wrong += [{"Authorization": f"Basic {KEY}"}, {"X-API-Key": KEY + " "}]
    for method, path in writes:
        for headers in wrong:
            response = _call(api_client, method, path, headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
    assert api_client.get(f"/records/{_first_id(api_client)}").status_code == 200
    assert api_client.get("/collections/default").json()["records"] == VQA_IMAGES + IU_REPORTS  # none deleted


def test_write_routes_are_disabled_without_a_configured_key(rel_home, rel_factory):
    with TestClient(make_app(rel_home, rel_factory, api_key=None)) as client:
        for method, path in _write_routes(client.app):
            assert _call(client, method, path, AUTH).status_code == 403


def test_keys_are_compared_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", spy)
    assert deps.key_matches(KEY, KEY) and not deps.key_matches("x" * len(KEY), KEY)
    assert not deps.key_matches("", KEY) and not deps.key_matches(None, KEY)
    assert compared[:2] == [(KEY.encode(), KEY.encode()), (b"x" * len(KEY), KEY.encode())]
    source = inspect.getsource(deps.key_matches) + inspect.getsource(deps._check_key)
    assert "==" not in source.replace("presented is None", "")  # no short-circuiting comparison of keys
    assert deps.key_matches("ключ-ü", "ключ-ü")  # non-ASCII keys compare as UTF-8 bytes, no TypeError


def test_cors_headers_absent_by_default_on_real_requests(api_client):
    response = api_client.get("/collections", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert not any(name.startswith("access-control-") for name in response.headers)


def test_streamed_upload_over_the_limit_is_413(api_client):
    boundary = "reliabilityboundary"

    def body():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'.encode()
        yield b"Content-Type: image/png\r\n\r\n"
        for _ in range(UPLOAD_LIMIT // 50_000 + 40):  # no Content-Length: counted as it streams
            yield b"\0" * 50_000
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    response = api_client.post("/search", content=body(), headers=headers)
    assert response.status_code == 413 and "bytes" in response.json()["detail"]


@pytest.mark.parametrize(
    "image_path",
    [
        "/etc/passwd",
        "/etc/../etc/passwd",
        "{home}/collections/default/records.sqlite",
        "{home}/secrets/x.png",
    ],
)
def test_image_route_serves_only_image_files_a_record_names(tmp_path, rel_factory, image_path):
    """Even a stored record cannot make the server send a non-image or a missing file."""
    home = tmp_path / "home"
    with Collection.open(home, "default", create=True) as collection:
        path = image_path.format(home=home)
        collection.add([Record(id="evil:1", kind="image", source="evil", image_path=path)])
    with TestClient(make_app(home, rel_factory)) as client:
        response = client.get("/records/evil:1/image")
        assert response.status_code == 404 and "missing on the server" in response.json()["detail"]
        assert "root:" not in response.text and path not in response.text


def test_settings_used_here_are_the_safe_defaults(tmp_path):
    from ui.api.settings import ApiSettings, api_settings_from

    defaults = api_settings_from(rel_settings(tmp_path))
    assert defaults.cors_origins == [] and defaults.api_key is None and not defaults.reads_require_key
    with pytest.raises(ValueError, match="empty"):
        ApiSettings(api_key="  ")


@pytest.mark.parametrize(
    ("method", "path", "status", "header"),
    [
        ("DELETE", "/records/x", 401, "www-authenticate"),  # raised by the key check
        ("GET", "/no/such/route", 404, None),  # raised by routing
        ("GET", "/concepts/a%0Ab", 404, None),  # a path the {concept_id:path} route does not match
        ("PUT", "/search", 405, "allow"),
    ],
)
def test_http_errors_have_the_documented_json_shape(api_client, method, path, status, header):
    """Found by schemathesis: Starlette's own HTTP errors answered `{"detail"}` without "error"."""
    response = api_client.request(method, path)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"detail", "error"} and body["detail"] and body["error"]
    if header:
        assert response.headers[header]
