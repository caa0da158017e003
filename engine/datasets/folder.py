"""Folder loader: any folder of images, with optional sidecar metadata keyed by file name.

Images are found recursively by extension (.png .jpg .jpeg .bmp .tif .tiff .webp, any case); hidden
files and folders (name starting with ".") are skipped. An optional sidecar at the folder root,
`metadata.jsonl` (one JSON object per line) or `metadata.csv` (header row; not both), has a `file_name`
column holding the image path relative to the folder ("/"-separated) and any of: caption, findings,
impression, history, diagnosis, modality, body_part, plane, labels (";"-separated in CSV, a list or a
";"-separated string in JSONL), split (train / val / dev / test words become "train", "validation",
"test" as for the other sources). Every other column goes to `extra` (empty CSV cells dropped);
modality, body part and plane are normalised, their raw text kept in extra when it maps to nothing.

One `Record` per image, id ``"folder:<folder name>/<relative path>"``, kind "image+text" when any text
field is present, else "image". A sidecar row naming a file that does not exist (or is not an image) is
skipped with a warning and reported in `LoadResult.skipped` (see `base`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from engine.datasets.base import (
    IMAGE_EXTENSIONS,
    LoadResult,
    SkippedRecord,
    finish,
    natural_key,
    read_csv,
    require_folder,
    skip_missing,
    text_value,
)
from engine.datasets.record import TEXT_FIELDS, Record
from engine.datasets.vocab import normalise_body_part, normalise_modality, normalise_plane, split_from_name
from engine.errors import DatasetFormatError

logger = logging.getLogger(__name__)

SOURCE = "folder"
SIDECARS: tuple[str, ...] = ("metadata.jsonl", "metadata.csv")
_NORMALISED = {"modality": normalise_modality, "body_part": normalise_body_part, "plane": normalise_plane}
_KNOWN = frozenset({"file_name", "labels", "split", *TEXT_FIELDS, *_NORMALISED})


def load_folder(path: str | Path) -> LoadResult:
    """Load a folder of images with optional `metadata.jsonl` / `metadata.csv`.

    Args:
        path: the folder (read recursively).

    Returns:
        One record per image (see the module docstring), sorted by id, and the skipped sidecar rows.

    Raises:
        DatasetFormatError: no image under the folder, both sidecars present, or a malformed sidecar
            (bad JSON line, missing `file_name`, a row repeated or pointing outside the folder).
    """
    folder = require_folder(path)
    images = find_images(folder)
    if not images:
        extensions = " ".join(sorted(IMAGE_EXTENSIONS))
        raise DatasetFormatError(f"no image files ({extensions}) under {str(folder)!r}")
    rows = read_sidecar(folder)
    skipped: list[SkippedRecord] = []
    for relative in sorted(set(rows) - set(images), key=natural_key):
        reason = (
            "image file missing"
            if not (folder / relative).exists()
            else "not an image file (extension or hidden)"
        )
        skipped.append(skip_missing(f"{SOURCE}:{folder.name}/{relative}", folder / relative, reason))
    records = [_image_record(folder, relative, rows.get(relative, {})) for relative in images]
    return finish(SOURCE, records, skipped)


def find_images(folder: Path) -> list[str]:
    """Relative "/"-separated paths of the image files under `folder`, hidden entries skipped, sorted."""
    found = []
    for root, directories, files in os.walk(folder):
        directories[:] = [name for name in directories if not name.startswith(".")]
        base = Path(root).relative_to(folder)
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append((base / name).as_posix())
    return sorted(found, key=natural_key)


def read_sidecar(folder: Path) -> dict[str, Mapping[str, Any]]:
    """Sidecar rows keyed by normalised relative path; {} when the folder has no sidecar.

    Raises:
        DatasetFormatError: both sidecars, a bad JSON line, a missing `file_name`, a repeated or escaping path.
    """
    present = [folder / name for name in SIDECARS if (folder / name).is_file()]
    if len(present) > 1:
        raise DatasetFormatError(f"both {SIDECARS[0]} and {SIDECARS[1]} in {str(folder)!r}: keep one")
    if not present:
        logger.info("no sidecar metadata in %s: image records only", folder)
        return {}
    sidecar = present[0]
    rows = _read_jsonl(sidecar) if sidecar.suffix == ".jsonl" else _read_csv_rows(sidecar)
    keyed: dict[str, Mapping[str, Any]] = {}
    for line, row in rows:
        relative = _relative_path(row.get("file_name"), sidecar, line)
        if relative in keyed:
            raise DatasetFormatError(
                f"{str(sidecar)!r} line {line}: file_name {relative!r} repeats an earlier row"
            )
        keyed[relative] = row
    return keyed


def _read_jsonl(sidecar: Path) -> list[tuple[int, Mapping[str, Any]]]:
    rows = []
    try:
        lines = sidecar.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"cannot read {str(sidecar)!r}: {e}") from e
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"invalid JSON in {str(sidecar)!r} line {number}: {e.msg}") from e
        except RecursionError as e:  # json's C scanner recurses per nesting level
            raise DatasetFormatError(
                f"invalid JSON in {str(sidecar)!r} line {number}: nested too deeply"
            ) from e
        if not isinstance(row, Mapping):
            raise DatasetFormatError(f"{str(sidecar)!r} line {number}: expected a JSON object")
        rows.append((number, row))
    return rows


def _read_csv_rows(sidecar: Path) -> list[tuple[int, Mapping[str, Any]]]:
    rows: list[tuple[int, Mapping[str, Any]]] = []
    for line, row in read_csv(sidecar, ("file_name",)):
        values: dict[str, Any] = {key: value for key, value in row.items() if value.strip()}
        if "labels" in values:
            values["labels"] = values["labels"].split(";")
        rows.append((line, values))
    return rows


def _relative_path(value: Any, sidecar: Path, line: int) -> str:
    """A sidecar `file_name` as a clean relative "/" path inside the folder."""
    if not isinstance(value, str) or not value.strip():
        raise DatasetFormatError(f"{str(sidecar)!r} line {line}: missing required field 'file_name'")
    relative = PurePosixPath(value.strip().replace("\\", "/"))
    parts = [part for part in relative.parts if part not in ("", ".")]
    if relative.is_absolute() or ".." in parts or not parts:
        raise DatasetFormatError(
            f"{str(sidecar)!r} line {line}: file_name {value!r} must be relative to the folder"
        )
    return "/".join(parts)


def _labels(value: Any) -> tuple[str, ...]:
    items = value.split(";") if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


def _image_record(folder: Path, relative: str, row: Mapping[str, Any]) -> Record:
    texts = {name: text_value(row.get(name)) for name in TEXT_FIELDS}
    normalised = {name: normalise(text_value(row.get(name))) for name, normalise in _NORMALISED.items()}
    extra = {key: value for key, value in row.items() if key not in _KNOWN}
    for name, value in normalised.items():
        if value is None and text_value(row.get(name)):
            extra[f"{name}_text"] = text_value(row.get(name))
    split = text_value(row.get("split"))
    return Record(
        id=f"{SOURCE}:{folder.name}/{relative}",
        kind="image+text" if any(texts.values()) else "image",
        source=SOURCE,
        image_path=str(folder / relative),
        findings=texts["findings"],
        impression=texts["impression"],
        caption=texts["caption"],
        history=texts["history"],
        diagnosis=texts["diagnosis"],
        modality=normalised["modality"],
        body_part=normalised["body_part"],
        plane=normalised["plane"],
        labels=_labels(row.get("labels")),
        split=split_from_name(split) or split if split else None,
        extra=extra,
    )
