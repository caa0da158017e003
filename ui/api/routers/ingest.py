"""`POST /ingest` (API key): ingest a dataset folder that is on the server into a collection.

The folder is read in place with the engine's loader (validated before anything is written), like
`medsearch ingest`. The request holds the engine exclusively (`engine.write()`) until the ingest ends, so searches wait (503 after the busy
timeout): ingest large archives with the CLI, or while the server is idle. The key grants reading any folder
the server process can read.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Depends

from engine.errors import DatasetFormatError
from ui.api.deps import Engine, require_write_access
from ui.api.errors import ERROR_RESPONSES
from ui.api.models import IngestRequest, IngestResponse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["ingest"], responses=ERROR_RESPONSES)


@router.post(
    "/ingest",
    response_model=IngestResponse,
    dependencies=[Depends(require_write_access)],
    summary="Ingest a dataset folder on the server (needs the API key)",
)
def ingest(body: IngestRequest, engine: Engine) -> IngestResponse:
    folder = Path(body.path).expanduser()
    if not folder.is_dir():
        raise DatasetFormatError(f"no folder {body.path!r} on the server: give the path of a dataset folder")
    with engine.write() as workspace:
        name = body.collection or workspace.settings.collection
        logger.info("ingest %s from %s into %s requested over HTTP", body.dataset, folder, name)
        summary = workspace.ingest(body.dataset, folder, collection=name, progress=False)
    return IngestResponse(collection=name, **summary.as_dict())
