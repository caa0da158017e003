"""Shared fixtures: where the shared datasets are (MEDSEARCH_DATA or ../shared/data next to the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    configured = os.environ.get("MEDSEARCH_DATA")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only shared datasets folder; tests that need it skip when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared datasets not found (set MEDSEARCH_DATA or put shared/data next to the repo)")
    return path


@pytest.fixture(scope="session")
def knowledge(tmp_path_factory, shared_data: Path):
    """The knowledge graph built from the shared ontologies (once per test session) and its linker."""
    from engine.knowledge import Knowledge

    return Knowledge.load(tmp_path_factory.mktemp("kg-cache"), shared_data)
