"""IU X-ray (Open-I) loader: `indiana_reports.csv`, optional `indiana_projections.csv` and `annotation_r2gen.json`.

Format (as in the shared `iu-xray/` folder, i.e. the Kaggle CSV export plus the R2Gen annotation):
`indiana_reports.csv` has one row per study `uid,MeSH,Problems,image,indication,comparison,findings,
impression`; `indiana_projections.csv` one row per image `uid,filename,projection`;
`annotation_r2gen.json` is {"train": [...], "val": [...], "test": [...]} of {id: "CXR<uid>_IM-...", ...}.

One `Record` per study, kind "report", id ``"iu-xray:CXR<uid>"`` (the R2Gen id prefix):
findings, impression, history = indication (text kept verbatim, "XXXX" placeholders included),
labels = the MeSH `Problems` list (";"-separated; "normal" is kept, the "No Indexing" marker dropped),
extra["mesh"] = the full MeSH strings, modality "XR", body part "chest", split from the R2Gen lists
(train / val -> "validation" / test; a study in none, or no annotation file -> None), image_path None
(no images are shipped; extra["projections"] lists the file names and views, extra["r2gen_images"] the
R2Gen image paths).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.datasets.base import (
    LoadResult,
    finish,
    read_csv,
    read_json,
    require_file,
    require_folder,
    text_value,
)
from engine.datasets.record import Record
from engine.datasets.vocab import split_from_name
from engine.errors import DatasetFormatError

logger = logging.getLogger(__name__)

SOURCE = "iu-xray"
_REPORT_COLUMNS = ("uid", "findings", "impression")
_PROJECTION_COLUMNS = ("uid", "filename", "projection")
_R2GEN_ID = re.compile(r"^CXR(\d+)")
_NOT_LABELS = frozenset({"", "no indexing"})


def load_iu_xray(path: str | Path) -> LoadResult:
    """Load an IU X-ray folder.

    Args:
        path: folder with `indiana_reports.csv` (optional `indiana_projections.csv`, `annotation_r2gen.json`).

    Returns:
        One report record per study (see the module docstring), sorted by id.

    Raises:
        DatasetFormatError: the reports file is missing, a required column is absent, a uid is empty or
            repeated, or an optional file is present but malformed.
    """
    folder = require_folder(path)
    reports = require_file(folder, "indiana_reports.csv", "IU X-ray reports")
    projections = _read_projections(folder / "indiana_projections.csv")
    r2gen = _read_r2gen(folder / "annotation_r2gen.json")
    records = []
    seen: set[str] = set()
    for line, row in read_csv(reports, _REPORT_COLUMNS):
        uid = row["uid"].strip()
        if not uid:
            raise DatasetFormatError(f"{str(reports)!r} line {line}: empty uid")
        if uid in seen:
            raise DatasetFormatError(f"{str(reports)!r} line {line}: duplicate uid {uid!r}")
        seen.add(uid)
        records.append(_study_record(uid, row, projections.get(uid, []), r2gen.get(uid)))
    return finish(SOURCE, records)


def _study_record(
    uid: str,
    row: Mapping[str, str],
    projections: list[dict[str, str]],
    r2gen: tuple[str, Mapping[str, Any]] | None,
) -> Record:
    mesh = [term.strip() for term in row.get("MeSH", "").split(";") if term.strip()]
    problems = (term.strip() for term in row.get("Problems", "").split(";"))
    labels = tuple(dict.fromkeys(term for term in problems if term.lower() not in _NOT_LABELS))
    split, entry = r2gen if r2gen else (None, {})
    extra: dict[str, Any] = {
        "uid": uid,
        "mesh": mesh,
        "image": text_value(row.get("image")),
        "comparison": text_value(row.get("comparison")),
        "projections": projections,
    }
    if entry:
        extra.update(r2gen_id=entry.get("id"), r2gen_images=list(entry.get("image_path") or []))
    return Record(
        id=f"{SOURCE}:CXR{uid}",
        kind="report",
        source=SOURCE,
        findings=text_value(row.get("findings")),
        impression=text_value(row.get("impression")),
        history=text_value(row.get("indication")),
        modality="XR",
        body_part="chest",
        labels=labels,
        split=split,
        extra=extra,
    )


def _read_projections(file: Path) -> dict[str, list[dict[str, str]]]:
    """uid -> [{"file_name", "projection"}]; {} when the optional file is absent."""
    if not file.is_file():
        logger.info("no %s: studies carry no image file names", file)
        return {}
    by_uid: dict[str, list[dict[str, str]]] = {}
    for _, row in read_csv(file, _PROJECTION_COLUMNS):
        entry = {"file_name": row["filename"].strip(), "projection": row["projection"].strip()}
        by_uid.setdefault(row["uid"].strip(), []).append(entry)
    return by_uid


def _read_r2gen(file: Path) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """uid -> (split, R2Gen entry); {} when the optional file is absent."""
    if not file.is_file():
        logger.info("no %s: IU X-ray splits are None", file)
        return {}
    data = read_json(file)
    if not isinstance(data, Mapping):
        raise DatasetFormatError(f"{str(file)!r}: expected an object of split name -> list of studies")
    by_uid: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for key, entries in data.items():
        split = split_from_name(str(key)) or str(key).strip()
        if not isinstance(entries, list):
            raise DatasetFormatError(f"{str(file)!r}: {key!r} must be a list of studies")
        for index, entry in enumerate(entries):
            match = _R2GEN_ID.match(str(entry.get("id", ""))) if isinstance(entry, Mapping) else None
            if match is None:
                raise DatasetFormatError(
                    f"{str(file)!r} {key!r} record {index}: missing or malformed 'id' (CXR<uid>_...)"
                )
            by_uid.setdefault(match.group(1), (split, entry))
    return by_uid
