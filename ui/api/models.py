"""Request and response models of the HTTP API (the OpenAPI schema at /docs is generated from these)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine import datasets
from engine.datasets.record import Record
from engine.search import MAX_QUERY_CHARS, Hit

COLLECTION_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_RANK = 1000  # the engine returns at most this many hits per query, so offset + k <= MAX_RANK
Scalar = str | int | float | bool


class RangeSpec(BaseModel):
    """Numeric bounds of a range filter (at least one)."""

    model_config = ConfigDict(extra="forbid")

    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


FilterSpec = dict[str, Scalar | list[Scalar] | RangeSpec] | list[str]


class SearchQuery(BaseModel):
    """A search: text, an image, or both; the page of hits `offset` .. `offset + k - 1` is returned."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "brain hemorrhage",
                    "k": 5,
                    "filters": {"modality": ["CT", "MR"], "body_part": "head"},
                }
            ]
        },
    )

    text: str | None = Field(default=None, max_length=MAX_QUERY_CHARS, description="query text")
    image: str | None = Field(
        default=None,
        description="query image, base64-encoded file bytes or a data: URL (multipart requests send a file)",
    )
    k: int = Field(default=10, ge=1, le=100, description="hits per page")
    offset: int = Field(default=0, ge=0, lt=MAX_RANK, description="rank of the first hit returned (0-based)")
    mode: Literal["hybrid", "dense", "keyword"] = "hybrid"
    space: Literal["text", "clip", "ssl"] | None = Field(
        default=None,
        description="dense space (default: text for text queries, clip or ssl for image queries)",
    )
    filters: FilterSpec | None = Field(
        default=None,
        description=(
            'ANDed conditions on record metadata: {"modality": "CT"} (equality), {"body_part": ["chest", '
            '"head"]} (any of), {"age": {"gte": 30}} (range); or CLI expressions ["modality=CT,MR"]'
        ),
    )
    collection: str | None = Field(default=None, pattern=COLLECTION_PATTERN, description="default: settings")

    @model_validator(mode="after")
    def _page_within_reach(self) -> SearchQuery:
        if self.offset + self.k > MAX_RANK:
            raise ValueError(f"offset + k = {self.offset + self.k}: the engine ranks at most {MAX_RANK} hits")
        return self

    def filter_dict(self) -> dict[str, Any] | None:
        """`filters` in `Filter.from_dict` form (None when given as CLI expressions or absent)."""
        if not isinstance(self.filters, Mapping):
            return None
        return {
            name: value.model_dump(exclude_none=True) if isinstance(value, RangeSpec) else value
            for name, value in self.filters.items()
        }


class Why(BaseModel):
    """Why a hit was returned: rankers with its rank and raw score in each, spaces, matched words/concepts."""

    spaces: list[str]
    ranks: dict[str, int]
    scores: dict[str, float]
    matched_terms: list[str]
    matched_concepts: list[dict[str, Any]]


class HitOut(BaseModel):
    """One search result: design.md's hit fields plus `image_url`, where the API serves the record's image."""

    id: str
    score: float
    kind: str
    source: str
    text: str
    image_path: str | None
    image_url: str | None
    modality: str | None
    body_part: str | None
    concepts: list[dict[str, Any]]
    why: Why

    @classmethod
    def from_hit(cls, hit: Hit, image_url: str | None) -> HitOut:
        return cls(**hit.to_dict(), image_url=image_url)


class SearchResponse(BaseModel):
    collection: str
    hits: list[HitOut]
    offset: int
    k: int
    next_offset: int | None = Field(description="offset of the next page, or null when this is the last one")
    took_ms: float


class SpaceInfo(BaseModel):
    encoder: str
    dim: int


class CollectionInfo(BaseModel):
    name: str
    backend: str
    records: int
    by_source: dict[str, int]
    by_kind: dict[str, int]
    vectors: dict[str, int] = Field(description="space -> number of vectors")
    spaces: dict[str, SpaceInfo]


class CollectionDetail(CollectionInfo):
    facets: dict[str, dict[str, int]] = Field(
        description="field -> {value: record count}, most frequent first"
    )


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class QAOut(BaseModel):
    question: str
    answer: str
    answer_type: str | None = None
    qid: str | None = None


class RecordOut(BaseModel):
    """A stored record with its text, metadata, question-answer pairs and linked concepts."""

    id: str
    kind: str
    source: str
    image_path: str | None
    image_url: str | None
    text: str
    findings: str | None
    impression: str | None
    caption: str | None
    history: str | None
    diagnosis: str | None
    qa: list[QAOut]
    modality: str | None
    body_part: str | None
    plane: str | None
    labels: list[str]
    split: str | None
    extra: dict[str, Any]
    concepts: list[dict[str, Any]]

    @classmethod
    def from_record(
        cls, record: Record, concepts: Sequence[Mapping[str, Any]], image_url: str | None
    ) -> RecordOut:
        fields = asdict(record)
        fields["qa"] = [
            {k: qa[k] for k in ("question", "answer", "answer_type", "qid")} for qa in fields["qa"]
        ]
        return cls(**fields, text=record.text(), concepts=[dict(c) for c in concepts], image_url=image_url)


class RecordPageOut(BaseModel):
    collection: str
    records: list[RecordOut]
    total: int = Field(description="records matching the filter")
    offset: int
    limit: int
    next_offset: int | None


class DeleteResponse(BaseModel):
    collection: str
    id: str
    deleted: int


class IngestRequest(BaseModel):
    """Ingest a dataset folder that is on the server (read in place, never written to)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"dataset": "vqa-rad", "path": "/data/vqa-rad", "collection": "default"}]
        },
    )

    dataset: str = Field(description="loader name: vqa-rad, slake, medpix, iu-xray or folder")
    path: str = Field(min_length=1, description="absolute path of the dataset folder on the server")
    collection: str | None = Field(
        default=None, pattern=COLLECTION_PATTERN, description="created when missing"
    )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        # only registered loaders: the engine's "module:function" plug-in form is not reachable over HTTP
        if value not in datasets.names():
            raise ValueError(f"unknown dataset {value!r}; choose one of {datasets.names()}")
        return value


class FailedImage(BaseModel):
    path: str
    reason: str


class IngestResponse(BaseModel):
    collection: str
    source: str
    total: int
    added: int
    already_present: int
    missing_images: int
    failed_images: int
    failed: list[FailedImage]
    seconds: dict[str, float]
    seconds_total: float


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    collections: int
    process: int = Field(description="id of the server process that answered (one of N with `--workers N`)")


class ErrorOut(BaseModel):
    """Every 4xx/5xx raised by the engine or the API: the problem in words, and the error's type."""

    detail: str
    error: str
