"""Atomic files for persisted indexes: write a temporary file, fsync, then os.replace.

A persisted index is a folder whose `manifest.json` is the commit point: data files carry a fresh
generation in their names, the manifest naming the current ones is replaced last, and files of
older generations are removed afterwards. A crash at any moment leaves the previous state readable.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from indexers.errors import CorruptIndexError, StorageError

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def new_generation() -> str:
    """A unique, time-ordered tag for the data files of one save."""
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


def fsync_path(path: Path) -> None:
    """Flush a written file to disk (best effort for folders)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` via a temporary file and os.replace."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_path(path.parent)


LOCK_FILE = ".lock"


@contextmanager
def folder_lock(folder: Path, exclusive: bool) -> Iterator[None]:
    """Hold an advisory lock on an index folder: exclusive while a save writes and prunes its files, shared
    while a load reads the manifest and the file it names, so a load in one process never meets a file that
    another process's save has just pruned, and two saves never prune each other's new files.

    POSIX `flock` on ``<folder>/.lock``; a no-op where `fcntl` does not exist (Windows) or the folder is absent.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    if not folder.is_dir():
        yield
        return
    try:
        handle = open(folder / LOCK_FILE, "a+b")  # noqa: SIM115 - closed below
    except OSError:  # a read-only folder: nobody can save into it, so there is nothing to wait for
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_manifest(folder: Path, backend: str) -> dict[str, Any] | None:
    """The manifest of a persisted index in `folder`, None when there is none.

    Raises:
        StorageError: the manifest is unreadable, of another backend or of a newer format.
    """
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorruptIndexError(
            f"cannot read index manifest {path}: {e}; restore it or delete {folder}"
        ) from e
    if manifest.get("backend") != backend:
        raise StorageError(
            f"{path} holds a {manifest.get('backend')!r} index, not {backend!r}: use another path"
        )
    if manifest.get("format", 0) > FORMAT_VERSION:
        raise StorageError(f"{path} has format {manifest['format']} > {FORMAT_VERSION}: upgrade medsearch")
    return manifest


def data_file(folder: Path | None, manifest: dict[str, Any], key: str) -> Path:
    """The data file that `manifest[key]` names in `folder`; raises StorageError when it is missing."""
    if folder is None:
        raise StorageError("cannot load a persisted index without a path")
    path = folder / str(manifest.get(key, ""))
    if not manifest.get(key) or not path.is_file():
        raise CorruptIndexError(
            f"index file {path} named by {folder / MANIFEST} is missing: restore it or delete {folder}"
        )
    return path


def remove_stale(folder: Path, prefix: str, keep: str) -> None:
    """Remove files or folders named `prefix*` in `folder` other than `keep` (old generations, leftovers)."""
    for entry in folder.glob(f"{prefix}*"):
        if entry.name == keep:
            continue
        try:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as e:  # a leftover is harmless; the manifest names the live files
            logger.warning("could not remove stale index file %s: %s", entry, e)
