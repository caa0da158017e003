"""`POST /ask`: a question about an image (base64 in JSON, or a multipart upload), answered by the trained VQA
model with the cases and graph facts it rests on; `phrase` adds a sentence by the server's generator
(`MEDSEARCH_GENERATOR`), kept only when it states the answer and cites a case (else a template sentence)."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from engine.vqa.service import MAX_QUESTION_CHARS, Question
from ui.api.bodies import read_with_image
from ui.api.deps import Engine, Limits, image_url
from ui.api.errors import ERROR_RESPONSES
from ui.api.images import decode_image
from ui.api.models import COLLECTION_PATTERN

logger = logging.getLogger(__name__)

router = APIRouter(tags=["ask"], responses=ERROR_RESPONSES)


class AskQuery(BaseModel):
    """A question about an image."""

    question: str = Field(
        min_length=1, max_length=MAX_QUESTION_CHARS, examples=["Is there a pleural effusion?"]
    )
    image: str | None = Field(
        default=None, description="the image, base64 (or a data: URL); multipart requests upload it as a file"
    )
    phrase: bool = Field(default=False, description="add a sentence with [n] citations")
    collection: str | None = Field(
        default=None, pattern=COLLECTION_PATTERN, description="where cited cases' images are served from"
    )


class CitationOut(BaseModel):
    record_id: str
    qid: str
    question: str
    answer: str
    similarity: float
    supports: bool = Field(
        description="the case gave this answer (false: the nearest cases consulted disagreed)"
    )
    image_url: str | None = None


class FactOut(BaseModel):
    head: str
    relation: str
    value: str
    record_id: str
    weight: float


class AskResponse(BaseModel):
    question: str
    answer: str
    answer_type: str
    confidence: float
    citations: list[CitationOut]
    facts: list[FactOut]
    sentence: str | None = None
    phrased_by: str | None = None
    took_ms: float


@router.post(
    "/ask",
    response_model=AskResponse,
    summary="Answer a question about an image, with citations",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": AskQuery.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["question"],
                        "properties": {
                            "question": {"type": "string", "maxLength": MAX_QUESTION_CHARS},
                            "image": {"type": "string", "format": "binary"},
                            "phrase": {"type": "boolean"},
                            "collection": {"type": "string"},
                        },
                    }
                },
            },
        }
    },
)
async def ask(request: Request, engine: Engine, limits: Limits) -> AskResponse:
    """The answer (closed: yes/no or one of the options; open: a short answer), its confidence, the similar
    training cases that support it (with `image_url` when the collection holds them) and graph facts."""
    query, data, name = await read_with_image(
        request, AskQuery, ("question", "phrase", "collection"), limits.max_upload_bytes
    )

    def execute() -> AskResponse:
        started = time.perf_counter()
        image = decode_image(data, name) if data is not None else None
        with engine.read() as workspace:
            answer = workspace.ask(
                [Question("api", query.question, image)],
                generator=workspace.settings.generator if query.phrase else None,
                phrase=query.phrase,
            )[0]
            collection = query.collection or workspace.settings.collection
            held = _records_with_images(workspace, collection, [c["record_id"] for c in answer.citations])
        citations = [
            CitationOut(
                **{k: c[k] for k in ("record_id", "qid", "question", "answer", "similarity", "supports")},
                image_url=image_url(request, c["record_id"], collection) if c["record_id"] in held else None,
            )
            for c in answer.citations
        ]
        return AskResponse(
            question=answer.question,
            answer=answer.answer,
            answer_type=answer.answer_type,
            confidence=round(answer.confidence, 4),
            citations=citations,
            facts=[FactOut(**f) for f in answer.facts],
            sentence=answer.sentence,
            phrased_by=answer.phrased_by,
            took_ms=round(1000 * (time.perf_counter() - started), 1),
        )

    return await run_in_threadpool(execute)


def _records_with_images(workspace: Any, collection: str, ids: list[str]) -> set[str]:
    """Which of `ids` the collection holds with an image (so their thumbnails can be linked)."""
    if collection not in workspace.collection_names() or not ids:
        return set()
    found = workspace.collection(collection).get_many(ids)
    return {record_id for record_id, record in found.items() if record.image_path}
