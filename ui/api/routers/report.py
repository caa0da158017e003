"""`POST /report`: draft FINDINGS and IMPRESSION for a study image (base64 in JSON, or a multipart upload)
and/or an indication, from the most similar prior cases of a collection, every sentence cited; `phrase` lets
the server's generator (`MEDSEARCH_GENERATOR`) rephrase it, kept only when every sentence stays cited."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from engine.errors import QueryError
from ui.api.bodies import read_with_image
from ui.api.deps import Engine, Limits, image_url, open_collection
from ui.api.errors import ERROR_RESPONSES
from ui.api.images import decode_image
from ui.api.models import COLLECTION_PATTERN

logger = logging.getLogger(__name__)

router = APIRouter(tags=["report"], responses=ERROR_RESPONSES)

MAX_INDICATION_CHARS = 2000


class ReportQuery(BaseModel):
    """A study to draft a report for: an image, an indication, or both."""

    image: str | None = Field(default=None, description="the study image, base64 (or a data: URL)")
    indication: str | None = Field(
        default=None, max_length=MAX_INDICATION_CHARS, examples=["Headache, vomiting."]
    )
    k: int = Field(default=5, ge=1, le=20, description="similar cases to draft from")
    phrase: bool = Field(default=False, description="let the server's generator rephrase the draft")
    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN)


class ReportCitation(BaseModel):
    number: int
    record_id: str
    case_id: str
    similarity: float
    source: str
    sentences: list[str]
    image_url: str | None = None


class ReportResponse(BaseModel):
    findings: str
    impression: str
    text: str
    citations: list[ReportCitation]
    facts: list[str]
    query: str
    indication: str | None
    phrasing: dict[str, Any]
    collection: str
    took_ms: float


_FORM_SCHEMA = {
    "type": "object",
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "indication": {"type": "string", "maxLength": MAX_INDICATION_CHARS},
        "k": {"type": "integer", "minimum": 1, "maximum": 20},
        "phrase": {"type": "boolean"},
        "collection": {"type": "string"},
    },
}


@router.post(
    "/report",
    response_model=ReportResponse,
    summary="Draft a report from similar prior cases, with citations",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ReportQuery.model_json_schema()},
                "multipart/form-data": {"schema": _FORM_SCHEMA},
            },
        }
    },
)
async def report(request: Request, engine: Engine, limits: Limits) -> ReportResponse:
    """FINDINGS and IMPRESSION with [n] citations to the retrieved cases (`citations[n-1]`), graph facts about
    the impression, and `phrasing` (extractive, or the generator and why its text was or was not kept)."""
    query, data, name = await read_with_image(
        request, ReportQuery, ("indication", "k", "phrase", "collection"), limits.max_upload_bytes
    )
    if data is None and not (query.indication or "").strip():
        raise QueryError("send an image, an indication, or both")

    def execute() -> ReportResponse:
        from engine.rag.report import draft_report

        started = time.perf_counter()
        image = decode_image(data, name) if data is not None else None
        with engine.read() as workspace:
            collection = open_collection(workspace, query.collection)
            generator = workspace.generator(workspace.settings.generator) if query.phrase else None
            draft = draft_report(
                workspace, image, query.indication, collection=collection.name, k=query.k, generator=generator
            ).as_dict()
            held = {
                record_id
                for record_id, record in collection.get_many(
                    [c["record_id"] for c in draft["citations"]]
                ).items()
                if record.image_path
            }
        citations = [
            ReportCitation(
                **c,
                image_url=image_url(request, c["record_id"], collection.name)
                if c["record_id"] in held
                else None,
            )
            for c in draft["citations"]
        ]
        return ReportResponse(
            **{key: draft[key] for key in ("findings", "impression", "text", "facts", "query", "indication")},
            phrasing=draft["phrasing"],
            citations=citations,
            collection=collection.name,
            took_ms=round(1000 * (time.perf_counter() - started), 1),
        )

    return await run_in_threadpool(execute)
