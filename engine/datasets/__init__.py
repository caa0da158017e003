"""Dataset loaders: `load("vqa-rad", PATH)` -> list of `Record`s, validated before anything is returned.

Registry of loaders by name (`names()`); a loader reads a whole folder, checks all metadata eagerly
(raising `DatasetFormatError` naming the file and the problem) and returns records sorted by id.
Images are not decoded here: ingest does that and skips corrupt files. Records whose image file is
missing are skipped and reported (`load_with_report(...).skipped`; rule in `engine.datasets.base`).
A plug-in loader can be named as "package.module:function" (a function `(path, **options) -> LoadResult`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.datasets.base import LoadResult, SkippedRecord
from engine.datasets.folder import load_folder
from engine.datasets.iu_xray import load_iu_xray
from engine.datasets.medpix import load_medpix
from engine.datasets.record import QA, Record
from engine.datasets.slake import load_slake
from engine.datasets.vqa_rad import load_vqa_rad
from engine.errors import DatasetFormatError, UnknownDatasetError

logger = logging.getLogger(__name__)

Loader = Callable[..., LoadResult]

_LOADERS: dict[str, Loader] = {
    "dicom": lambda path, **kw: importlib.import_module("engine.datasets.dicom").load_dicom(path, **kw),
    "folder": load_folder,
    "iu-xray": load_iu_xray,
    "medpix": load_medpix,
    "slake": load_slake,
    "vqa-rad": load_vqa_rad,
}

__all__ = ["QA", "LoadResult", "Record", "SkippedRecord", "load", "load_with_report", "names"]


def names() -> list[str]:
    """Names of the registered loaders, sorted."""
    return sorted(_LOADERS)


def load(name: str, path: str | Path, **options: Any) -> list[Record]:
    """Load a dataset folder with the loader `name`.

    Args:
        name: one of `names()` (e.g. "vqa-rad"), or "package.module:function" for a plug-in loader.
        path: the dataset folder.
        **options: loader options, e.g. ``splits=["train"]`` for "vqa-rad", ``lang="en"`` for "slake".

    Returns:
        Records sorted by id (natural order); ids are unique.

    Raises:
        UnknownDatasetError: no loader of that name (the message lists the names).
        DatasetFormatError: the folder is not in the loader's format (names the file and the problem).
    """
    return list(load_with_report(name, path, **options).records)


def load_with_report(name: str, path: str | Path, **options: Any) -> LoadResult:
    """Like `load`, but also returns the records skipped because their image file is missing."""
    result = _resolve(name)(path, **options)
    if not isinstance(result, LoadResult):
        raise DatasetFormatError(f"loader {name!r} returned {type(result).__name__}, expected LoadResult")
    ids = [record.id for record in result.records]
    if len(set(ids)) != len(ids):
        raise DatasetFormatError(f"loader {name!r} returned duplicate record ids for {str(path)!r}")
    return result


def _resolve(name: str) -> Loader:
    if name in _LOADERS:
        return _LOADERS[name]
    if ":" not in name:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; choose one of {names()} or give 'module:function'"
        )
    module_name, _, function_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise UnknownDatasetError(f"dataset loader {name!r}: cannot import module {e.name!r}") from e
    loader = getattr(module, function_name, None)
    if not callable(loader):
        raise UnknownDatasetError(f"dataset loader {name!r}: {module_name} has no function {function_name!r}")
    return loader
