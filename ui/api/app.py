"""`create_app`: the FastAPI app (API at /, OpenAPI at /docs) with the Gradio web app mounted at /ui.

The Workspace (settings, models, collections) is built in the lifespan, once per process, and reached by
routes through dependencies (`app.state.engine`); nothing is a module global. Run it with
`medsearch serve`, or `uvicorn ui.api:create_app --factory` (settings from MEDSEARCH_* / medsearch.toml).
`medsearch serve --workers N` runs N worker processes, each building its app with `create_worker_app` from the
settings the CLI resolved; a write in one worker is replayed by the others before their next read (see
`EngineHandle.read`), and the index folders are locked while saved and loaded.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from engine.settings import Settings
from engine.workspace import Workspace
from ui.api.deps import key_matches, require_read_access
from ui.api.engine import EngineHandle, WorkspaceFactory
from ui.api.errors import install_error_handlers
from ui.api.limits import BodySizeLimitMiddleware
from ui.api.routers import ask, collections, concepts, ingest, records, report, search, system
from ui.api.settings import ApiSettings, api_settings_from

logger = logging.getLogger(__name__)

WORKER_CONFIG_ENV = "MEDSEARCH_SERVE_WORKER_CONFIG"
STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that failed before serving (its supervisor then stops)

WEB_PATH = "/ui"
DESCRIPTION = """Retrieval-augmented multimodal search over medical images and radiology reports.

Reads are open unless the server sets `MEDSEARCH_READS_REQUIRE_KEY=true`; `POST /ingest` and
`DELETE /records/{id}` need `MEDSEARCH_API_KEY`, sent as `X-API-Key: KEY` or `Authorization: Bearer KEY`.
Errors are JSON: `{"detail": "what is wrong", "error": "ErrorType"}` (422 bodies list the invalid fields).
The web app is at [/ui](/ui)."""


def create_app(
    settings: Settings | None = None,
    api_settings: ApiSettings | None = None,
    *,
    web: bool = True,
    workspace_factory: WorkspaceFactory = Workspace,
) -> FastAPI:
    """Build the app; nothing is loaded until the lifespan starts (uvicorn or `with TestClient(app)`).

    Args:
        settings: engine settings (default: `Settings()`, i.e. MEDSEARCH_* variables and medsearch.toml).
        api_settings: server settings (default: from `settings` and the environment, see `ApiSettings`).
        web: mount the Gradio web app at /ui (skipped with a warning when gradio is not installed).
        workspace_factory: builds the Workspace from settings (tests pass one that reuses loaded encoders).
    """
    settings = settings or Settings()
    api_settings = api_settings or api_settings_from(settings)
    engine = EngineHandle(
        settings,
        busy_timeout=api_settings.busy_timeout_seconds,
        concurrent_reads=api_settings.concurrent_reads,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(engine.open, workspace_factory)
        try:
            yield
        finally:
            await run_in_threadpool(engine.close)

    app = FastAPI(
        title="medsearch",
        version=system.medsearch_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.api_settings = api_settings
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=api_settings.max_request_bytes)
    if api_settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=api_settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
        )
    app.include_router(system.router)
    for router in (
        collections.router,
        search.router,
        ask.router,
        report.router,
        records.router,
        concepts.router,
    ):
        app.include_router(router, dependencies=[Depends(require_read_access)])
    app.include_router(ingest.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    if web:
        _mount_web(app, engine, api_settings)
    return app


def worker_config(settings: Settings, *, web: bool = False, verbose: bool = False) -> str:
    """What `create_worker_app` rebuilds a worker's app from: the resolved settings (CLI flags included) as JSON."""
    return json.dumps({"settings": settings.model_dump(mode="json"), "web": web, "verbose": verbose})


def create_worker_app() -> FastAPI:
    """The app of one `medsearch serve --workers N` worker process (uvicorn calls it with `factory=True`).

    Settings come from `MEDSEARCH_SERVE_WORKER_CONFIG` (set by the CLI; validated as given, so every worker
    serves the home and options the command resolved), else from MEDSEARCH_* / medsearch.toml as `create_app`.
    A worker that cannot build its app logs why and exits with uvicorn's startup-failure code, so the supervisor
    stops instead of restarting it forever.
    """
    from ui.logs import configure_logging

    try:
        raw = os.environ.get(WORKER_CONFIG_ENV)
        if not raw:
            settings = Settings()
            configure_logging(settings.log_level)
            return create_app(settings)
        try:
            config = json.loads(raw)
            settings = Settings.model_validate(config["settings"])
        except (ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"{WORKER_CONFIG_ENV} does not hold worker settings: {e}") from e
        configure_logging(settings.log_level, verbose=bool(config.get("verbose")))
        return create_app(settings, web=bool(config.get("web")))
    except Exception as e:  # noqa: BLE001 - any failure here would fail the same way on every restart
        logger.error("worker %d cannot build the app: %s", os.getpid(), e)
        raise SystemExit(STARTUP_FAILURE) from e


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the models of the hand-parsed `POST /search` body."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(search.openapi_schemas())
        app.openapi_schema = schema
    return app.openapi_schema


def _mount_web(app: FastAPI, engine: EngineHandle, api_settings: ApiSettings) -> None:
    try:
        import gradio as gr

        from ui.web import WEB_CSS, build_web, web_theme
    except ModuleNotFoundError as e:
        logger.warning("web app not mounted at %s: %s (pip install 'medsearch[web]')", WEB_PATH, e)
        return
    auth = None
    if api_settings.reads_require_key and api_settings.api_key is not None:
        key = api_settings.api_key.get_secret_value()

        def auth(_user: str, password: str) -> bool:  # log in with any user name and the API key
            return key_matches(password, key)

    gr.mount_gradio_app(
        app,
        build_web(engine),
        path=WEB_PATH,
        auth=auth,
        max_file_size=api_settings.max_upload_bytes,
        footer_links=[],
        run_history=False,
        theme=web_theme(),
        css=WEB_CSS,
    )
