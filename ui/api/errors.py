"""Engine and API errors -> HTTP status + JSON `{"detail": message, "error": type}` (message names the problem)."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import (
    MEDSEARCH_ERRORS,
    CollectionError,
    ConceptNotFoundError,
    DatasetFormatError,
    EncoderUnavailableError,
    ImageReadError,
    ModelNotTrainedError,
    QueryError,
    RecordNotFoundError,
    UnknownDatasetError,
    UnknownEncoderError,
)
from indexers.errors import BackendUnavailableError, FilterError
from ui.api.engine import EngineBusyError, EngineNotStartedError
from ui.api.models import ErrorOut

logger = logging.getLogger(__name__)


class UnknownCollectionError(LookupError):
    """No collection of that name in the server's home folder."""


class UploadTooLargeError(ValueError):
    """A query image (or a whole request body) larger than the server accepts."""


# most specific first: the first class an error is an instance of decides its status
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (RecordNotFoundError, 404),
    (ConceptNotFoundError, 404),
    (UnknownCollectionError, 404),
    (UploadTooLargeError, 413),
    (QueryError, 400),
    (FilterError, 400),
    (ImageReadError, 400),
    (DatasetFormatError, 400),
    (UnknownDatasetError, 400),
    (EncoderUnavailableError, 503),
    (UnknownEncoderError, 503),  # a collection built with an encoder this server cannot load
    (BackendUnavailableError, 503),
    (EngineBusyError, 503),
    (ModelNotTrainedError, 503),  # e.g. /ask before `medsearch train vqa`
    (EngineNotStartedError, 503),
    (CollectionError, 409),
)
HANDLED: tuple[type[Exception], ...] = (
    *MEDSEARCH_ERRORS,
    UnknownCollectionError,
    UploadTooLargeError,
    EngineBusyError,
    EngineNotStartedError,
)

# OpenAPI `responses=` for routes (the body of every error)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "bad query, filter or image"),
        (401, "missing or wrong API key"),
        (404, "unknown collection or record"),
        (503, "engine busy or a model unavailable"),
    )
}


def status_of(error: Exception) -> int:
    """The HTTP status for an engine/API error (500 for anything not listed)."""
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 500)


def error_response(status: int, detail: str, error: str) -> JSONResponse:
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse(
        ErrorOut(detail=detail, error=error).model_dump(), status_code=status, headers=headers
    )


async def handle_engine_error(request: Request, error: Exception) -> JSONResponse:
    status = status_of(error)
    if status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, error, exc_info=error)
    else:
        logger.info("%s %s -> %d: %s", request.method, request.url.path, status, error)
    return error_response(status, str(error), type(error).__name__)


async def handle_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    """Anything else is a bug: answer JSON without internals (the server logs the traceback after this)."""
    logger.error("%s %s failed unexpectedly: %s", request.method, request.url.path, type(error).__name__)
    return error_response(500, "internal server error (logged on the server)", "InternalServerError")


async def handle_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """HTTP errors raised by routes and by routing itself (401/403 key checks, 404 no such route, 405, 415) in
    the same `{"detail", "error"}` shape as the others, keeping their headers (WWW-Authenticate, Allow)."""
    detail = error.detail if isinstance(error.detail, str) else str(error.detail)
    try:
        name = HTTPStatus(error.status_code).phrase.replace(" ", "")
    except ValueError:  # a status code outside the standard list
        name = "HTTPError"
    response = error_response(error.status_code, detail, name)
    response.headers.update(error.headers or {})
    return response


def install_error_handlers(app: FastAPI) -> None:
    for kind in HANDLED:
        app.add_exception_handler(kind, handle_engine_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
    app.add_exception_handler(Exception, handle_unexpected_error)
