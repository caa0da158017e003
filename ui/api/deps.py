"""FastAPI dependencies: the engine handle and settings from app state, API-key checks, collection lookup."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Query, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from engine.collection import Collection
from engine.workspace import Workspace
from ui.api.engine import EngineHandle
from ui.api.errors import UnknownCollectionError
from ui.api.models import COLLECTION_PATTERN
from ui.api.settings import ApiSettings

logger = logging.getLogger(__name__)

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="the server's MEDSEARCH_API_KEY"
)
_bearer = HTTPBearer(auto_error=False, description="the server's MEDSEARCH_API_KEY as a bearer token")


def get_engine(request: Request) -> EngineHandle:
    return request.app.state.engine


def get_api_settings(request: Request) -> ApiSettings:
    return request.app.state.api_settings


Engine = Annotated[EngineHandle, Depends(get_engine)]
Limits = Annotated[ApiSettings, Depends(get_api_settings)]
CollectionName = Annotated[
    str | None,
    Query(
        pattern=COLLECTION_PATTERN, description="collection name (default: the server's default collection)"
    ),
]


def key_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented key with the configured one."""
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def _check_key(
    api: ApiSettings, header_key: str | None, bearer: HTTPAuthorizationCredentials | None, action: str
) -> None:
    if api.api_key is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{action} is disabled on this server: start it with MEDSEARCH_API_KEY set to enable it",
        )
    presented = header_key or (bearer.credentials if bearer else None)
    if presented is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"{action} needs the API key: send 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not key_matches(presented, api.api_key.get_secret_value()):
        logger.warning("wrong API key presented for %s", action)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"wrong API key for {action}",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_read_access(
    api: Limits,
    header_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> None:
    """Reads are open unless `reads_require_key` is set."""
    if api.reads_require_key:
        _check_key(api, header_key, bearer, "reading")


def require_write_access(
    api: Limits,
    header_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> None:
    """Writes (ingest, delete) always need the API key; without a configured key they are disabled."""
    _check_key(api, header_key, bearer, "writing (ingest, delete)")


def open_collection(workspace: Workspace, name: str | None) -> Collection:
    """The named (or default) collection; UnknownCollectionError (404) when the home folder has none of that name.

    Names are checked against the listing before anything touches the file system.
    """
    name = name or workspace.settings.collection
    existing = workspace.collection_names()
    if name not in existing:
        raise UnknownCollectionError(
            f"no collection {name!r} on this server (existing: {existing or 'none'}); ingest it first"
        )
    return workspace.collection(name)


def image_url(request: Request, record_id: str, collection: str) -> str:
    """Where `GET /records/{id}/image` serves a record's image (relative to the server root)."""
    root = request.scope.get("root_path", "").rstrip("/")
    return f"{root}/records/{quote(record_id, safe=':/@')}/image?collection={quote(collection)}"
