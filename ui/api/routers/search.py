"""`POST /search`: a JSON body (image as base64) or a form (multipart with the image as a file upload, or
url-encoded without one).

One route takes both content types, so the body is parsed here (with the same `SearchQuery` model and the
same 422 errors FastAPI gives) and both are documented in the OpenAPI schema.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ui.api.deps import Engine, Limits, image_url
from ui.api.errors import ERROR_RESPONSES
from ui.api.images import bytes_from_base64, bytes_from_upload, decode_image
from ui.api.models import HitOut, SearchQuery, SearchResponse
from ui.api.queries import run_search

logger = logging.getLogger(__name__)

router = APIRouter(tags=["search"], responses=ERROR_RESPONSES)

_FORM_FIELDS = ("text", "k", "offset", "mode", "space", "collection")


def openapi_schemas() -> dict[str, dict[str, Any]]:
    """Component schemas the hand-parsed body refers to (the app adds them to its OpenAPI document)."""
    schema = SearchQuery.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"SearchQuery": schema, **defs}


def _openapi_body() -> dict[str, Any]:
    properties = openapi_schemas()["SearchQuery"]["properties"]
    form_schema = {
        "type": "object",
        "properties": {
            **{name: properties[name] for name in _FORM_FIELDS},
            "image": {"type": "string", "format": "binary", "description": "query image file"},
            "filter": {
                "type": "array",
                "items": {"type": "string"},
                "description": "CLI filter expressions (repeat the field): modality=CT,MR, body_part=head",
            },
            "filters": {"type": "string", "description": "filters as a JSON object, as in the JSON body"},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SearchQuery"}},
                "multipart/form-data": {"schema": form_schema},
            },
        }
    }


def _validate(data: Any) -> SearchQuery:
    try:
        if isinstance(data, bytes):
            return SearchQuery.model_validate_json(data or b"{}")
        return SearchQuery.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in errors]) from e


async def _read_form(request: Request, limit: int) -> tuple[SearchQuery, bytes | None, str]:
    async with request.form(max_files=1, max_fields=64) as form:
        fields: dict[str, Any] = {
            name: form[name] for name in _FORM_FIELDS if form.get(name) not in (None, "")
        }
        expressions = [value for value in form.getlist("filter") if isinstance(value, str) and value]
        if form.get("filters"):
            try:
                fields["filters"] = json.loads(str(form["filters"]))
            except json.JSONDecodeError as e:
                raise RequestValidationError(
                    [
                        {
                            "type": "json_invalid",
                            "loc": ("body", "filters"),
                            "msg": f"not a JSON object: {e.msg}",
                        }
                    ]
                ) from e
        elif expressions:
            fields["filters"] = expressions
        image = form.get("image")
        if isinstance(image, UploadFile):
            query = _validate(fields)
            return query, await bytes_from_upload(image, limit), f"uploaded image {image.filename!r}"
        if isinstance(image, str) and image:
            fields["image"] = image
    query = _validate(fields)
    return query, None, ""


async def read_search_input(request: Request, limit: int) -> tuple[SearchQuery, bytes | None, str]:
    """(query, image bytes or None, a name for the image in error messages) from a JSON or multipart body."""
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        query, data, name = await _read_form(request, limit)
    elif content_type == "application/json":
        query, data, name = _validate(await request.body()), None, ""
    else:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"content type {content_type!r}: send application/json or multipart/form-data (or a url-encoded form)",
        )
    if data is None and query.image:
        data, name = bytes_from_base64(query.image, limit), "image (base64)"
    return query, data, name


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search a collection by text, image or both",
    openapi_extra=_openapi_body(),
)
async def search(request: Request, engine: Engine, limits: Limits) -> Response:
    """Hits as in design.md (`id, score, kind, source, text, image_path, modality, body_part, concepts, why`)
    plus `image_url`. Pages: `offset` + `k`; `next_offset` is null on the last page."""
    query, data, name = await read_search_input(request, limits.max_upload_bytes)

    def execute() -> Response:
        image = decode_image(data, name) if data is not None else None
        with engine.read() as workspace:  # shared: searches run concurrently
            page = run_search(workspace, query, image)
        hits = [
            HitOut.from_hit(hit, image_url(request, hit.id, page.collection) if hit.image_path else None)
            for hit in page.hits
        ]
        body = SearchResponse(
            collection=page.collection,
            hits=hits,
            offset=page.offset,
            k=page.k,
            next_offset=page.next_offset,
            took_ms=page.took_ms,
        )
        # validated once above and serialised once here, in the worker thread: returning the model would make
        # FastAPI dump, re-validate and re-serialise it on the event loop (~1.5 ms of a 10-hit page)
        return Response(body.model_dump_json(), media_type="application/json")

    return await run_in_threadpool(execute)
