"""`GET /` (where things are) and `GET /health` (liveness; open even when reads need a key)."""

from __future__ import annotations

import logging
import os
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request

from engine.collection import list_collections
from ui.api.models import Health

logger = logging.getLogger(__name__)

router = APIRouter(tags=["system"])


def medsearch_version() -> str:
    try:
        return version("medsearch")
    except PackageNotFoundError:
        return "unknown"


@router.get("/", summary="Where the API, its documentation and the web app are")
def index() -> dict[str, Any]:
    return {
        "name": "medsearch",
        "version": medsearch_version(),
        "docs": "/docs",
        "openapi": "/openapi.json",
        "web": "/ui",
    }


@router.get("/health", response_model=Health, summary="Liveness check")
def health(request: Request) -> Health:
    """Answers without waiting for the engine (so it stays up during an ingest)."""
    home = request.app.state.engine.settings.home
    return Health(version=medsearch_version(), collections=len(list_collections(home)), process=os.getpid())
