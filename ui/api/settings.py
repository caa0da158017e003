"""`ApiSettings`: what only the HTTP server needs (API key, upload limit, CORS), read like `Settings`.

Field names match top-level `Settings` fields so they can move into `engine/settings.py` unchanged: when
`Settings` has a field of the same name, `api_settings_from(settings)` takes its value; otherwise the field is
read from its `MEDSEARCH_*` environment variable (`MEDSEARCH_API_KEY`, `MEDSEARCH_READS_REQUIRE_KEY`,
`MEDSEARCH_MAX_UPLOAD_BYTES`, `MEDSEARCH_CORS_ORIGINS` as a JSON list, `MEDSEARCH_BUSY_TIMEOUT_SECONDS`,
`MEDSEARCH_CONCURRENT_READS`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.settings import Settings

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024


class ApiSettings(BaseSettings):
    """HTTP server settings.

    api_key: the key that `POST /ingest` and `DELETE /records/{id}` need (sent as `X-API-Key: KEY` or
        `Authorization: Bearer KEY`); None (default) disables those routes.
    reads_require_key: when True, every route but `/health` needs the key (reads are open by default).
    max_upload_bytes: largest query image accepted (multipart file or decoded base64); larger gets 413.
    cors_origins: origins allowed to call the API from a browser; empty (default) = CORS off.
    busy_timeout_seconds: how long a request waits for the engine (busy with an ingest) before a 503.
    concurrent_reads: searches share the engine and run at once (default); False serialises every engine call
        (`MEDSEARCH_CONCURRENT_READS=false`, the behaviour before; benchmarks compare the two).
    """

    model_config = SettingsConfigDict(env_prefix="MEDSEARCH_", extra="ignore")

    api_key: SecretStr | None = None
    reads_require_key: bool = False
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, gt=0)
    cors_origins: list[str] = Field(default_factory=list)
    busy_timeout_seconds: float = Field(default=30.0, gt=0)
    concurrent_reads: bool = True

    @model_validator(mode="after")
    def _key_for_closed_reads(self) -> ApiSettings:
        if self.reads_require_key and self.api_key is None:
            raise ValueError("reads_require_key is set but no api_key is configured: set MEDSEARCH_API_KEY")
        if self.api_key is not None and not self.api_key.get_secret_value().strip():
            raise ValueError("api_key is empty: set MEDSEARCH_API_KEY to a non-empty secret or unset it")
        return self

    @property
    def max_request_bytes(self) -> int:
        """Largest request body: an upload as base64 (4/3 larger) plus 64 KiB for the other fields."""
        return self.max_upload_bytes * 4 // 3 + 64 * 1024


def api_settings_from(settings: Settings, **overrides: Any) -> ApiSettings:
    """ApiSettings taking each field from `settings` when it has one, else from the environment."""
    shared = {
        name: getattr(settings, name)
        for name in ApiSettings.model_fields
        if name in type(settings).model_fields
    }
    return ApiSettings(**{**shared, **overrides})
