"""One typed `Settings` object: constructor arguments, then MEDSEARCH_* variables, then medsearch.toml.

Built once at the edge (CLI `main`, the API's lifespan) and passed down; indexers and kg get plain arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path | None:
    """`../shared/data` next to the repo (or next to the working directory) when it exists."""
    for base in (REPO_ROOT, Path.cwd()):
        candidate = (base.parent / "shared" / "data").resolve()
        if candidate.is_dir():
            return candidate
    return None


class IndexSettings(BaseModel):
    """Which vector backend holds a collection's spaces, and each backend's own options.

    The per-backend blocks are passed to `indexers.create(backend, dim=..., **options)` as they are
    (e.g. faiss: {"kind": "hnsw", "ef_search": 128}; qdrant: {"url": "http://host:6333"}). A faiss block
    without "kind" (or with "kind": "auto") lets the collection choose by size (`indexers.defaults`).
    """

    backend: str = "faiss"
    faiss: dict[str, Any] = Field(default_factory=dict)
    qdrant: dict[str, Any] = Field(default_factory=dict)
    milvus: dict[str, Any] = Field(default_factory=dict)

    def options_for(self, backend: str) -> dict[str, Any]:
        return dict(getattr(self, backend, {}) or {})


class EncoderSettings(BaseModel):
    """Registry names of the encoder per space; image spaces default to the project's trained checkpoints."""

    text: str = "minilm"
    clip: str | None = None  # e.g. "trained:<home>/models/clip" or "open_clip:hf-hub:..."
    ssl: str | None = None
    batch_size: int = 64
    minilm_onnx: bool = (
        True  # MiniLM query batches run in onnxruntime (CPU; checked at load; needs onnxruntime)
    )
    minilm_traced: bool = True  # else a TorchScript trace of the transformer (CPU; checked at load)


class Settings(BaseSettings):
    """Everything configurable. `MEDSEARCH_HOME`, `MEDSEARCH_DATA`, `MEDSEARCH_INDEX__BACKEND=qdrant`, ..."""

    model_config = SettingsConfigDict(
        env_prefix="MEDSEARCH_", env_nested_delimiter="__", toml_file="medsearch.toml", extra="ignore"
    )

    home: Path = Path(".medsearch")
    data: Path | None = Field(default_factory=default_data_dir)
    collection: str = "default"
    index: IndexSettings = Field(default_factory=IndexSettings)
    encoders: EncoderSettings = Field(default_factory=EncoderSettings)
    kg_enabled: bool = True  # link concepts at ingest and use them in hybrid search
    generator: str = "local"  # phrases answers/reports when asked: local, extractive, openai:URL, vllm:MODEL
    ingest_batch_size: int = 256
    decode_workers: int = 4
    log_level: str = "INFO"

    @field_validator("collection")
    @classmethod
    def _valid_collection_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError(f"collection name {value!r}: use letters, digits, '-' and '_' only")
        return value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):  # noqa: ANN001, ANN206 - signature fixed by pydantic-settings
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def collections_dir(self) -> Path:
        return self.home / "collections"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def kg_dir(self) -> Path:
        return self.home / "kg"
