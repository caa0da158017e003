"""`GET /collections`, `GET /collections/{name}` (with facet counts), `GET /collections/{name}/records` (pages)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from engine.records import facet_counts, page_records
from indexers import parse_filters
from ui.api.deps import Engine, image_url, open_collection
from ui.api.errors import ERROR_RESPONSES
from ui.api.models import (
    COLLECTION_PATTERN,
    CollectionDetail,
    CollectionInfo,
    CollectionList,
    RecordOut,
    RecordPageOut,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/collections", tags=["collections"], responses=ERROR_RESPONSES)
CollectionPath = Annotated[str, Path(pattern=COLLECTION_PATTERN, description="collection name")]


@router.get("", response_model=CollectionList, summary="Collections with record and vector counts")
def list_collections(engine: Engine) -> CollectionList:
    with engine.use() as workspace:
        stats = [workspace.collection(name).stats() for name in workspace.collection_names()]
    return CollectionList(collections=[CollectionInfo(**item) for item in stats])


@router.get("/{name}", response_model=CollectionDetail, summary="One collection's statistics and facets")
def get_collection(name: CollectionPath, engine: Engine) -> CollectionDetail:
    with engine.use() as workspace:
        collection = open_collection(workspace, name)
        return CollectionDetail(**collection.stats(), facets=facet_counts(collection))


@router.get(
    "/{name}/records", response_model=RecordPageOut, summary="Records in id order, one page at a time"
)
def list_records(
    request: Request,
    name: CollectionPath,
    engine: Engine,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    filter: Annotated[
        list[str] | None,
        Query(description="CLI filter expressions, ANDed: modality=CT, body_part=chest,head"),
    ] = None,
) -> RecordPageOut:
    with engine.use() as workspace:
        collection = open_collection(workspace, name)
        page = page_records(collection, offset=offset, limit=limit, filter=parse_filters(filter))
        concepts = collection.concepts_of([record.id for record in page.records])
    end = offset + len(page.records)
    return RecordPageOut(
        collection=name,
        records=[
            RecordOut.from_record(
                record,
                concepts.get(record.id, []),
                image_url(request, record.id, name) if record.image_path else None,
            )
            for record in page.records
        ],
        total=page.total,
        offset=offset,
        limit=limit,
        next_offset=end if end < page.total else None,
    )
