"""MedPix 2.0 loader: `Case_topic.json`, `Descriptions.json`, optional `uid_list.json` and `images/*.png`.

Format (as in the shared `medpix-2.0/` folder and the CHILab1/MedPix-2.0 release): `Case_topic.json` is a
list of cases {U_id, TAC: [image ids], MRI: [image ids], Case: {Title, History, Exam, Findings,
Differential Diagnosis, Case Diagnosis, ...}, Topic: {...}}; `Descriptions.json` a list of images
{Type, U_id, image, Location, Location Category, Description: {ACR Codes, Age, Sex, Caption, Figure Part,
Modality, Plane}}; `uid_list.json` maps split names to case ids (`train`, `dev`, `test`; the `train_1` /
`train_2` halves are ignored). A missing `uid_list.json` leaves every split None.

Records:

- one per case, kind "report", id ``"medpix:MPX1009"``: history, findings, diagnosis (Case Diagnosis),
  caption (its images' captions joined by newlines, in TAC then MRI order), modality from the TAC (CT) and
  MRI (MR) lists (the larger list when both; extra["modalities"] has both), body part the most frequent
  among its images, split from `uid_list.json` ("dev" -> "validation"; a case in no list -> None).
  extra: title, exam, differential, discussion, treatment, topic {...}, image ids.
- one per image whose `images/<image>.png` exists, kind "image+text", id ``"medpix:MPX1009_synpic46283"``:
  caption, modality (Description.Modality, else Type), plane, body part (Location, else Location
  Category), the case's findings and diagnosis, split of the case; extra case_id, age, sex, acr_codes.

Images are shipped only for some cases (in the shared copy: the dev split). A described image without a
file gets no image record: such a record would be an image-kind entry with no pixels, and its caption is
already searchable on its case record. These are reported as skipped (see `base`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.datasets.base import (
    LoadResult,
    SkippedRecord,
    expect_list,
    finish,
    read_json,
    require_fields,
    require_file,
    require_folder,
    skip_missing,
    text_value,
)
from engine.datasets.record import Record
from engine.datasets.vocab import normalise_body_part, normalise_modality, normalise_plane, split_from_name
from engine.errors import DatasetFormatError

logger = logging.getLogger(__name__)

SOURCE = "medpix"
_SPLIT_KEYS: tuple[str, ...] = ("train", "dev", "val", "validation", "test")
_CASE_EXTRA: dict[str, str] = {
    "title": "Title",
    "exam": "Exam",
    "differential": "Differential Diagnosis",
    "diagnosis_by": "Diagnosis By",
    "discussion": "Discussion",
    "treatment": "Treatment & Follow Up",
}
_TOPIC_EXTRA: dict[str, str] = {
    "title": "Title",
    "discussion": "Disease Discussion",
    "acr_code": "ACR Code",
    "category": "Category",
    "keywords": "Keywords",
}


def load_medpix(path: str | Path) -> LoadResult:
    """Load a MedPix 2.0 folder.

    Args:
        path: folder with `Case_topic.json` and `Descriptions.json` (optional `uid_list.json`, `images/`).

    Returns:
        Case records and image records (see the module docstring), sorted by id, and the skipped images.

    Raises:
        DatasetFormatError: a required file is missing or invalid, a record lacks a field, an id repeats,
            or a description names a case that does not exist.
    """
    folder = require_folder(path)
    cases = _read_cases(require_file(folder, "Case_topic.json", "MedPix cases"))
    descriptions = _read_descriptions(
        require_file(folder, "Descriptions.json", "MedPix image descriptions"), cases
    )
    splits = _read_splits(folder / "uid_list.json")
    images_dir = folder / "images"
    records: list[Record] = []
    skipped: list[SkippedRecord] = []
    for case_id, case in cases.items():
        images = _case_images(case, descriptions.get(case_id, []))
        case_record = _case_record(case_id, case, images, splits.get(case_id))
        records.append(case_record)
        for image in images:
            file = images_dir / f"{image['image']}.png"
            if file.is_file():
                records.append(_image_record(image, file, case_record))
            else:
                skipped.append(skip_missing(f"{SOURCE}:{image['image']}", file))
    return finish(SOURCE, records, skipped)


def _read_cases(file: Path) -> dict[str, Mapping[str, Any]]:
    cases: dict[str, Mapping[str, Any]] = {}
    for index, item in enumerate(expect_list(read_json(file), file)):
        where = f"record {index} (U_id {item.get('U_id') if isinstance(item, Mapping) else None})"
        require_fields(item, ("U_id", "Case"), file, where)
        if not isinstance(item["Case"], Mapping):
            raise DatasetFormatError(f"{str(file)!r} {where}: field 'Case' must be an object")
        for key in ("TAC", "MRI"):
            if not isinstance(item.get(key, []), list):
                raise DatasetFormatError(f"{str(file)!r} {where}: field {key!r} must be a list of image ids")
        case_id = str(item["U_id"])
        if case_id in cases:
            raise DatasetFormatError(f"{str(file)!r} {where}: duplicate case id {case_id!r}")
        cases[case_id] = item
    return cases


def _read_descriptions(file: Path, cases: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """case id -> its image descriptions, validated."""
    by_case: dict[str, list[Mapping[str, Any]]] = {}
    seen: set[str] = set()
    for index, item in enumerate(expect_list(read_json(file), file)):
        where = f"record {index} (image {item.get('image') if isinstance(item, Mapping) else None})"
        require_fields(item, ("image", "U_id", "Description"), file, where)
        if not isinstance(item["Description"], Mapping):
            raise DatasetFormatError(f"{str(file)!r} {where}: field 'Description' must be an object")
        if str(item["U_id"]) not in cases:
            raise DatasetFormatError(
                f"{str(file)!r} {where}: case {item['U_id']!r} is not in Case_topic.json"
            )
        image_id = str(item["image"])
        if image_id in seen:
            raise DatasetFormatError(f"{str(file)!r} {where}: duplicate image id {image_id!r}")
        seen.add(image_id)
        by_case.setdefault(str(item["U_id"]), []).append(item)
    return by_case


def _read_splits(file: Path) -> dict[str, str]:
    """case id -> split, from the official lists ("dev" -> "validation"); {} when the file is absent."""
    if not file.is_file():
        logger.info("no %s: MedPix splits are None", file)
        return {}
    data = read_json(file)
    if not isinstance(data, Mapping):
        raise DatasetFormatError(f"{str(file)!r}: expected an object of split name -> case ids")
    splits: dict[str, str] = {}
    for key in _SPLIT_KEYS:
        ids = data.get(key, [])
        if not isinstance(ids, list):
            raise DatasetFormatError(f"{str(file)!r}: {key!r} must be a list of case ids")
        for case_id in ids:
            splits.setdefault(str(case_id), split_from_name(key) or key)
    return splits


def _case_images(case: Mapping[str, Any], images: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The case's described images: those its TAC/MRI lists name first (in that order), then any other."""
    order = {image_id: rank for rank, image_id in enumerate(_image_ids(case))}
    return sorted(images, key=lambda image: order.get(str(image["image"]), len(order)))


def _image_ids(case: Mapping[str, Any]) -> list[str]:
    return [str(image_id) for key in ("TAC", "MRI") for image_id in case.get(key) or []]


def _case_record(
    case_id: str, case: Mapping[str, Any], images: list[Mapping[str, Any]], split: str | None
) -> Record:
    body = case["Case"]
    body_parts = [part for part in (_image_body_part(image) for image in images) if part]
    counts = {"CT": len(case.get("TAC") or []), "MR": len(case.get("MRI") or [])}
    modalities = [name for name, count in counts.items() if count]
    captions = [text_value(image["Description"].get("Caption")) for image in images]
    extra: dict[str, Any] = {key: text_value(body.get(name)) for key, name in _CASE_EXTRA.items()}
    topic = case.get("Topic") if isinstance(case.get("Topic"), Mapping) else {}
    extra["topic"] = {key: text_value(topic.get(name)) for key, name in _TOPIC_EXTRA.items()}
    extra.update(modalities=modalities, image_ids=_image_ids(case))
    return Record(
        id=f"{SOURCE}:{case_id}",
        kind="report",
        source=SOURCE,
        findings=text_value(body.get("Findings")),
        caption="\n".join(caption for caption in captions if caption) or None,
        history=text_value(body.get("History")),
        diagnosis=text_value(body.get("Case Diagnosis")),
        modality=max(modalities, key=lambda name: counts[name]) if modalities else None,
        body_part=Counter(body_parts).most_common(1)[0][0] if body_parts else None,
        split=split,
        extra=extra,
    )


def _image_body_part(image: Mapping[str, Any]) -> str | None:
    return normalise_body_part(_text(image.get("Location"))) or normalise_body_part(
        _text(image.get("Location Category"))
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _image_record(image: Mapping[str, Any], file: Path, case: Record) -> Record:
    description = image["Description"]
    return Record(
        id=f"{SOURCE}:{image['image']}",
        kind="image+text",
        source=SOURCE,
        image_path=str(file),
        findings=case.findings,
        caption=text_value(description.get("Caption")),
        diagnosis=case.diagnosis,
        modality=normalise_modality(_text(description.get("Modality")))
        or normalise_modality(_text(image.get("Type"))),
        body_part=_image_body_part(image),
        plane=normalise_plane(_text(description.get("Plane"))),
        split=case.split,
        extra={
            "case_id": str(image["U_id"]),
            "age": text_value(description.get("Age")),
            "sex": text_value(description.get("Sex")),
            "acr_codes": text_value(description.get("ACR Codes")),
            "figure_part": text_value(description.get("Figure Part")),
            "location": text_value(image.get("Location")),
            "location_category": text_value(image.get("Location Category")),
            "modality_text": text_value(description.get("Modality")),
            "plane_text": text_value(description.get("Plane")),
        },
    )
