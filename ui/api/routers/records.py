"""`GET /records/{id}`, `GET /records/{id}/image`, `DELETE /records/{id}` (API key).

Ids may hold slashes ("folder:mydir/a.png"), hence `{record_id:path}`; the image route is declared first so
`/records/<id>/image` reaches it. The image route serves only the file that the stored record names as its
`image_path` (and only an image file): the URL is a database key, never a file path.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path as FilePath

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from engine.datasets.base import IMAGE_EXTENSIONS
from engine.errors import RecordNotFoundError
from ui.api.deps import CollectionName, Engine, image_url, open_collection, require_write_access
from ui.api.errors import ERROR_RESPONSES
from ui.api.models import DeleteResponse, RecordOut

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/records", tags=["records"], responses=ERROR_RESPONSES)


@router.get(
    "/{record_id:path}/image",
    response_class=FileResponse,
    summary="The image file of a record",
    responses={200: {"content": {"image/*": {}}, "description": "the record's image file"}},
)
def get_record_image(record_id: str, engine: Engine, collection: CollectionName = None) -> FileResponse:
    with engine.read() as workspace:
        record = open_collection(workspace, collection).get(record_id)
    if not record.image_path:
        raise RecordNotFoundError(f"record {record_id!r} has no image (it is a {record.kind!r} record)")
    path = FilePath(record.image_path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
        logger.warning("record %s names an image file that is missing or not an image: %s", record_id, path)
        raise RecordNotFoundError(f"the image file of record {record_id!r} is missing on the server")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


@router.get(
    "/{record_id:path}", response_model=RecordOut, summary="A record with its text, metadata and concepts"
)
def get_record(
    request: Request, record_id: str, engine: Engine, collection: CollectionName = None
) -> RecordOut:
    with engine.read() as workspace:
        opened = open_collection(workspace, collection)
        record = opened.get(record_id)
        concepts = opened.concepts_of([record_id]).get(record_id, [])
    url = image_url(request, record.id, opened.name) if record.image_path else None
    return RecordOut.from_record(record, concepts, url)


@router.delete(
    "/{record_id:path}",
    response_model=DeleteResponse,
    dependencies=[Depends(require_write_access)],
    summary="Delete a record (needs the API key)",
)
def delete_record(record_id: str, engine: Engine, collection: CollectionName = None) -> DeleteResponse:
    with engine.write() as workspace:
        opened = open_collection(workspace, collection)
        deleted = workspace.delete([record_id], collection=opened.name)
    if not deleted:
        raise RecordNotFoundError(f"no record {record_id!r} in collection {opened.name!r}")
    logger.info("deleted record %s from %s", record_id, opened.name)
    return DeleteResponse(collection=opened.name, id=record_id, deleted=deleted)
