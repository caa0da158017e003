"""SLAKE loader: `imgs/xmlabN/source.jpg` (+ `detection.json`) and split QA files.

Format (as in the shared `slake/` folder and the official SLAKE 1.0 release): every JSON file at the
folder root whose name starts with a split word is read: `train*.json` -> "train", `validate*.json` /
`val*.json` -> "validation", `test*.json` -> "test" (so `train_en.json` and the official bilingual
`train.json` both load). Each is a JSON list of {img_id, img_name, question, answer, q_lang, location,
modality, answer_type, base_type, content_type, triple, qid}. Only QA pairs in `lang` (default "en")
are kept; a qid seen twice (e.g. `train.json` beside `train_en.json`) is kept once.

One `Record` per image directory, id ``"slake:<directory>"`` (``"slake:xmlab1"``), kind "image+text":

- qa: its QA pairs (split, base_type, content_type in `QA.extra`; the KG triple too for `kvqa` pairs).
- modality from `modality`, body_part from `location`, plane from the answers of its "Plane" questions
  ("Transverse Plane" -> axial), split from the file its QA pairs came from.
- caption composed from facts, so that an image without free text still has a sentence to embed:
  ``"<modality> of the <location> showing <organs>"`` with the source's own words, e.g.
  "MRI of the abdomen showing liver, left kidney"; organs are the labels of `detection.json` in order.
- extra["boxes"]: [{"label": "Liver", "box": [x, y, w, h]}, ...] from `detection.json` (pixels).

An image referenced by QA pairs but absent on disk (the shared copy lacks `xmlab0`, 10 validation QA
pairs) is skipped with its QA pairs (see `base`). Image directories no QA file references are ignored
(their split is unknown; the held-out test images must not slip in).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from engine.datasets.base import (
    LoadResult,
    SkippedRecord,
    expect_list,
    finish,
    natural_key,
    read_json,
    require_fields,
    require_folder,
    skip_missing,
)
from engine.datasets.record import QA, Record
from engine.datasets.vocab import (
    normalise_answer_type,
    normalise_body_part,
    normalise_modality,
    normalise_plane,
    split_from_name,
)
from engine.errors import DatasetFormatError

logger = logging.getLogger(__name__)

SOURCE = "slake"
SPLIT_ORDER: tuple[str, ...] = ("train", "validation", "test")
_REQUIRED = ("img_name", "question", "answer")
_NO_TRIPLE = ["vhead", "_", "_"]


def load_slake(
    path: str | Path, *, lang: str | None = "en", splits: Iterable[str] | None = None
) -> LoadResult:
    """Load a SLAKE folder.

    Args:
        path: folder with `imgs/` and at least one split file (`train_en.json`, `validate_en.json`, ...).
        lang: keep QA pairs whose `q_lang` is this ("en", "zh"); None keeps all.
        splits: read only these splits' files (e.g. ["train", "validation"]); None reads all present.

    Returns:
        One record per image (see the module docstring), sorted by id, and the skipped ones.

    Raises:
        DatasetFormatError: no `imgs/` folder, no split file, invalid JSON (QA or detection.json) or a
            QA record missing a field.
    """
    folder = require_folder(path)
    images_dir = folder / "imgs"
    if not images_dir.is_dir():
        raise DatasetFormatError(f"missing folder {str(images_dir)!r} (SLAKE images)")
    groups: dict[str, list[tuple[QA, Mapping[str, Any]]]] = {}
    seen_qids: set[str] = set()
    for split, qa_file in _split_files(folder, splits):
        for item, qa in _read_qa_file(qa_file, split, lang):
            if qa.qid is not None and qa.qid in seen_qids:
                continue
            if qa.qid is not None:
                seen_qids.add(qa.qid)
            groups.setdefault(item["img_name"], []).append((qa, item))
    records: list[Record] = []
    skipped: list[SkippedRecord] = []
    for img_name, pairs in groups.items():
        image = images_dir / img_name
        record_id = f"{SOURCE}:{PurePosixPath(img_name).parent.name or PurePosixPath(img_name).stem}"
        if not image.is_file():
            skipped.append(skip_missing(record_id, image, f"image file missing ({len(pairs)} QA pairs)"))
            continue
        records.append(_image_record(record_id, image, pairs))
    return finish(SOURCE, records, skipped)


def _split_files(folder: Path, splits: Iterable[str] | None) -> list[tuple[str, Path]]:
    """(split, file) for every root JSON file named for a split (filtered by `splits`), in split order."""
    wanted = set(splits) if splits is not None else set(SPLIT_ORDER)
    found = []
    for candidate in sorted(folder.glob("*.json")):
        split = split_from_name(candidate.stem)
        if split in wanted:
            found.append((split, candidate))
    if not found:
        raise DatasetFormatError(
            f"missing QA file in {str(folder)!r}: expected train_en.json, validate_en.json or test_en.json"
            f" (splits {sorted(wanted)})"
        )
    return sorted(found, key=lambda pair: (SPLIT_ORDER.index(pair[0]), pair[1].name))


def _read_qa_file(qa_file: Path, split: str, lang: str | None) -> list[tuple[Mapping[str, Any], QA]]:
    """(raw record, QA pair) for every record of one split file in `lang`, validated."""
    rows = []
    for index, item in enumerate(expect_list(read_json(qa_file), qa_file)):
        qid = item.get("qid") if isinstance(item, Mapping) else None
        where = f"record {index} (qid {qid})"
        require_fields(item, _REQUIRED, qa_file, where)
        if not all(isinstance(item[key], str) for key in ("img_name", "question")):
            raise DatasetFormatError(f"{str(qa_file)!r} {where}: img_name and question must be text")
        if lang is not None and item.get("q_lang", lang) != lang:
            continue
        extra: dict[str, Any] = {"split": split}
        extra.update({key: item[key] for key in ("base_type", "content_type") if item.get(key) is not None})
        triple = item.get("triple")
        if isinstance(triple, list) and triple != _NO_TRIPLE:
            extra["triple"] = list(triple)
        answer_type = item.get("answer_type")
        qa = QA(
            question=item["question"].strip(),
            answer=str(item["answer"]).strip(),
            answer_type=normalise_answer_type(answer_type if isinstance(answer_type, str) else None),
            qid=None if qid is None else str(qid),
            extra=extra,
        )
        rows.append((item, qa))
    return rows


def _image_record(record_id: str, image: Path, pairs: list[tuple[QA, Mapping[str, Any]]]) -> Record:
    qas = tuple(sorted((qa for qa, _ in pairs), key=lambda qa: natural_key(qa.qid or "")))
    modality_text = _most_common(item.get("modality") for _, item in pairs)
    location_text = _most_common(item.get("location") for _, item in pairs)
    boxes = read_boxes(image.parent / "detection.json")
    splits = [qa.extra["split"] for qa in qas]
    return Record(
        id=record_id,
        kind="image+text",
        source=SOURCE,
        image_path=str(image),
        caption=compose_caption(modality_text, location_text, [box["label"] for box in boxes]),
        qa=qas,
        modality=normalise_modality(modality_text),
        body_part=normalise_body_part(location_text),
        plane=_plane(qas),
        split=min(splits, key=SPLIT_ORDER.index),
        extra={"boxes": boxes, "location": location_text, "modality_text": modality_text},
    )


def _most_common(values: Any) -> str | None:
    texts = [value.strip() for value in values if isinstance(value, str) and value.strip()]
    return Counter(texts).most_common(1)[0][0] if texts else None


def _plane(qas: tuple[QA, ...]) -> str | None:
    answers = [
        qa.answer for qa in qas if qa.extra.get("content_type") == "Plane" and "plane" in qa.answer.lower()
    ]
    return _most_common(normalise_plane(answer) for answer in answers)


def compose_caption(modality: str | None, location: str | None, organs: list[str]) -> str | None:
    """A caption from facts: "MRI of the abdomen showing liver, left kidney" (None when nothing is known)."""
    subject = modality or "Image"
    if location:
        subject += f" of the {location.replace('_', ' ').lower()}"
    names = list(dict.fromkeys(organ.lower() for organ in organs))
    if names:
        subject += " showing " + ", ".join(names)
    return subject if (modality or location or names) else None


def read_boxes(detection: Path) -> list[dict[str, Any]]:
    """Organ / lesion boxes of one image: [{"label": str, "box": [x, y, w, h]}]; [] when the file is absent.

    Raises:
        DatasetFormatError: the file is not a list of {label: [x, y, w, h]} objects.
    """
    if not detection.is_file():
        logger.debug("no %s", detection)
        return []
    boxes = []
    for index, entry in enumerate(expect_list(read_json(detection), detection)):
        if not isinstance(entry, Mapping):
            raise DatasetFormatError(f"{str(detection)!r} entry {index}: expected {{label: [x, y, w, h]}}")
        for label, box in entry.items():
            if not (
                isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)
            ):
                raise DatasetFormatError(
                    f"{str(detection)!r} entry {index} ({label!r}): box must be [x, y, w, h]"
                )
            boxes.append({"label": str(label), "box": [float(v) for v in box]})
    return boxes
