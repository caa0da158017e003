"""Shared pieces of the loaders: the load result, file reading and field checks whose errors name the file.

Missing image files, the one rule every loader follows: a record that exists *for an image* (a VQA-RAD or
SLAKE image with its QA pairs, a MedPix image with its caption, a folder image with its sidecar row) is
skipped when its image file does not exist, because its text describes pixels we do not have. The skip
is logged (one WARNING per load with the count and the first paths, DEBUG for each path) and returned in
`LoadResult.skipped`. Report records (MedPix cases, IU X-ray studies) never depend on an image file.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.datasets.record import Record
from engine.errors import DatasetFormatError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
_EMPTY_TEXT: frozenset[str] = frozenset({"", "n/a", "none", "none."})
_LOGGED_PATHS = 5


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out of a load: its would-be id, the file that was missing, and why."""

    id: str
    path: str
    reason: str


@dataclass(frozen=True)
class LoadResult:
    """What a loader returns: records sorted by id (natural order) and the records it skipped."""

    records: tuple[Record, ...]
    skipped: tuple[SkippedRecord, ...] = ()


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders digit runs by value ("xmlab2" before "xmlab10")."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part)


def finish(source: str, records: Iterable[Record], skipped: Iterable[SkippedRecord] = ()) -> LoadResult:
    """Sort records, check their ids are unique and log what was skipped.

    Raises:
        DatasetFormatError: two records share an id.
    """
    ordered = tuple(sorted(records, key=lambda record: (natural_key(record.id), record.id)))
    seen: set[str] = set()
    for record in ordered:
        if record.id in seen:
            raise DatasetFormatError(f"{source}: duplicate record id {record.id!r}")
        seen.add(record.id)
    skipped_all = tuple(sorted(skipped, key=lambda item: natural_key(item.id)))
    if skipped_all:
        examples = ", ".join(item.path for item in skipped_all[:_LOGGED_PATHS])
        more = f" and {len(skipped_all) - _LOGGED_PATHS} more" if len(skipped_all) > _LOGGED_PATHS else ""
        logger.warning(
            "%s: skipped %d record(s) whose image file is missing: %s%s",
            source,
            len(skipped_all),
            examples,
            more,
        )
        for item in skipped_all:
            logger.debug("%s: skipped %s (%s): %s", source, item.id, item.path, item.reason)
    logger.info("%s: loaded %d records", source, len(ordered))
    return LoadResult(records=ordered, skipped=skipped_all)


def require_folder(path: str | Path) -> Path:
    """The dataset folder as an absolute path.

    Raises:
        DatasetFormatError: it does not exist or is not a folder.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise DatasetFormatError(f"dataset folder {str(folder)!r} {problem}")
    return folder.resolve()


def require_file(folder: Path, name: str, what: str) -> Path:
    """`folder / name`, which must be an existing file described by `what` in the error."""
    path = folder / name
    if not path.is_file():
        raise DatasetFormatError(f"missing file {str(path)!r} ({what})")
    return path


def read_json(path: Path) -> Any:
    """Parse a JSON file; errors name the file, line and column."""
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(
            f"invalid JSON in {str(path)!r} at line {e.lineno} column {e.colno}: {e.msg}"
        ) from e
    except RecursionError as e:  # json's C scanner recurses per nesting level
        raise DatasetFormatError(f"invalid JSON in {str(path)!r}: nested too deeply") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"cannot read {str(path)!r}: {e}") from e


def expect_list(data: Any, path: Path) -> list[Any]:
    """`data` (parsed from `path`) if it is a JSON list, else a DatasetFormatError."""
    if not isinstance(data, list):
        raise DatasetFormatError(f"{str(path)!r}: expected a JSON list of records, got {type(data).__name__}")
    return data


def read_csv(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with a header, each with its line number.

    Args:
        path: the CSV file (UTF-8, optional BOM).
        required: columns that the header must have.

    Returns:
        (line number, row) pairs; empty cells are "".

    Raises:
        DatasetFormatError: unreadable file, missing column, or a row with more cells than the header.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, restkey="\0extra")
            missing = [name for name in required if name not in (reader.fieldnames or [])]
            if missing:
                raise DatasetFormatError(f"{str(path)!r}: missing column(s) {missing} in the header line")
            rows = []
            for row in reader:
                if "\0extra" in row:
                    raise DatasetFormatError(
                        f"{str(path)!r} line {reader.line_num}: more cells than header columns"
                    )
                rows.append((reader.line_num, {key: value or "" for key, value in row.items()}))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetFormatError(f"cannot read CSV {str(path)!r}: {e}") from e


def require_fields(item: Any, fields: Sequence[str], path: Path, where: str) -> Mapping[str, Any]:
    """Check that a JSON record is an object holding `fields` (not null).

    Args:
        item: the parsed record.
        fields: names that must be present and not null.
        path: the file it came from (named in the error).
        where: its position and id, e.g. "record 12 (qid 13)".

    Raises:
        DatasetFormatError: naming the file, the record and the missing fields.
    """
    if not isinstance(item, Mapping):
        raise DatasetFormatError(f"{str(path)!r} {where}: expected a JSON object, got {type(item).__name__}")
    missing = [name for name in fields if item.get(name) is None]
    if missing:
        raise DatasetFormatError(f"{str(path)!r} {where}: missing required field(s) {missing}")
    return item


def text_value(value: Any) -> str | None:
    """A stripped text field, or None for null, empty or placeholder values ("N/A", "None.")."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return None if text.lower() in _EMPTY_TEXT else text


def skip_missing(record_id: str, image: Path, reason: str = "image file missing") -> SkippedRecord:
    """Describe a record skipped because `image` does not exist (see the module docstring)."""
    return SkippedRecord(id=record_id, path=str(image), reason=reason)
