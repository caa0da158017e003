"""VQA-RAD loader: `images/*.jpg` plus one or more QA files named `<split>set.json`.

Format (as in the shared `vqa-rad/` folder and the official MEVF release): `trainset.json` and, for
users who hold it, `testset.json`; each a JSON list of {qid, image_name, image_organ, question, answer,
answer_type, question_type, phrase_type}. The split comes from the file name (trainset -> "train",
testset -> "test", valset -> "validation").

One `Record` per image, id ``"vqa-rad:<image stem>"``:

- kind "image+text" with all its QA pairs (ordered by split then qid; each QA's split, question_type and
  phrase_type in `QA.extra`); an image file with no QA pair (synpic35356) is a kind "image" record with
  split None.
- split: the first of train, validation, test among its QA pairs. All official test images also have
  train questions, so pass ``splits=["train"]`` to keep held-out test answers out of a collection.
- body_part: `image_organ` (HEAD/CHEST/ABD). No labels.
- modality: VQA-RAD has no modality field, so it is inferred from the image's MODALITY-type QA pairs:
  an answer that names a modality ("MR - T2 weighted", "FLAIR", "Chest X-ray") votes for it; a "yes"
  to "Is this a CT scan?" votes for the one modality the question names; a question that presupposes
  one ("Does this CT have contrast?") votes for it; questions with "not" never vote. The most voted
  modality wins (ties: the first vote); no vote -> None.

A QA pair naming an image file that does not exist is skipped with its image (see `base`).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from engine.datasets.base import (
    IMAGE_EXTENSIONS,
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
    find_modalities,
    normalise_answer_type,
    normalise_body_part,
    normalise_modality,
    split_from_name,
)
from engine.errors import DatasetFormatError

logger = logging.getLogger(__name__)

SOURCE = "vqa-rad"
SPLIT_ORDER: tuple[str, ...] = ("train", "validation", "test")
_REQUIRED = ("image_name", "question", "answer")
_ASKS_IDENTITY = re.compile(r"^\s*(is|was) (this|the)\b")
_PRESUPPOSES = re.compile(r"\b(this|the) (mri|mr|ct|x-?ray|cxr)\b")
_NEGATED = re.compile(r"\bnot\b")


def load_vqa_rad(path: str | Path, *, splits: Iterable[str] | None = None) -> LoadResult:
    """Load a VQA-RAD folder.

    Args:
        path: folder with `images/` and at least one `<split>set.json`.
        splits: read only these splits' QA files (e.g. ["train"]); None reads every QA file present.

    Returns:
        One record per image (see the module docstring), sorted by id, and the skipped ones.

    Raises:
        DatasetFormatError: no `images/` folder, no QA file, invalid JSON or a record missing a field.
    """
    folder = require_folder(path)
    images_dir = folder / "images"
    if not images_dir.is_dir():
        raise DatasetFormatError(f"missing folder {str(images_dir)!r} (VQA-RAD images)")
    by_image: dict[str, list[QA]] = {}
    organs: dict[str, str] = {}
    for split, qa_file in _qa_files(folder, splits):
        for name, qa, organ in _read_qa_file(qa_file, split):
            by_image.setdefault(name, []).append(qa)
            if organ and name not in organs:
                organs[name] = organ
    on_disk = {p.name for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    on_disk = {name for name in on_disk if not name.startswith(".")}
    records: list[Record] = []
    skipped: list[SkippedRecord] = []
    for name in sorted(set(by_image) | on_disk, key=natural_key):
        image = images_dir / name
        record_id = f"{SOURCE}:{Path(name).stem}"
        if not image.is_file():
            skipped.append(
                skip_missing(record_id, image, f"image file missing ({len(by_image[name])} QA pairs)")
            )
            continue
        records.append(_image_record(record_id, image, by_image.get(name, []), organs.get(name)))
    return finish(SOURCE, records, skipped)


def _qa_files(folder: Path, splits: Iterable[str] | None) -> list[tuple[str, Path]]:
    """(split, file) for every `*set.json` in the folder, in split order, filtered by `splits`."""
    found = []
    for qa_file in sorted(folder.glob("*set.json")):
        stem = qa_file.stem
        found.append((split_from_name(stem) or stem[: -len("set")], qa_file))
    if not found:
        raise DatasetFormatError(
            f"missing QA file in {str(folder)!r}: expected trainset.json or testset.json"
        )
    wanted = set(splits) if splits is not None else None
    chosen = [(split, qa_file) for split, qa_file in found if wanted is None or split in wanted]
    if not chosen:
        raise DatasetFormatError(
            f"no QA file for splits {sorted(wanted or [])} in {str(folder)!r}; found {[s for s, _ in found]}"
        )
    return sorted(chosen, key=lambda pair: (_split_rank(pair[0]), pair[0]))


def _split_rank(split: str | None) -> int:
    return SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER)


def _read_qa_file(qa_file: Path, split: str) -> list[tuple[str, QA, str | None]]:
    """(image file name, QA pair, image_organ) for every record of one QA file, validated."""
    rows = []
    for index, item in enumerate(expect_list(read_json(qa_file), qa_file)):
        qid = item.get("qid") if isinstance(item, Mapping) else None
        where = f"record {index} (qid {qid})"
        require_fields(item, _REQUIRED, qa_file, where)
        name, question, answer = item["image_name"], item["question"], item["answer"]
        if (
            not isinstance(name, str)
            or not isinstance(question, str)
            or not isinstance(answer, (str, int, float))
        ):
            raise DatasetFormatError(
                f"{str(qa_file)!r} {where}: image_name, question and answer must be text"
            )
        extra = {"split": split}
        extra.update(
            {key: item[key] for key in ("question_type", "phrase_type") if item.get(key) is not None}
        )
        answer_type = item.get("answer_type")
        qa = QA(
            question=question.strip(),
            answer=str(answer).strip(),
            answer_type=normalise_answer_type(answer_type if isinstance(answer_type, str) else None),
            qid=None if qid is None else str(qid),
            extra=extra,
        )
        organ = item.get("image_organ")
        rows.append((name, qa, organ if isinstance(organ, str) else None))
    return rows


def _image_record(record_id: str, image: Path, qas: list[QA], organ: str | None) -> Record:
    ordered = tuple(sorted(qas, key=lambda qa: (_split_rank(qa.extra["split"]), natural_key(qa.qid or ""))))
    split = ordered[0].extra["split"] if ordered else None
    return Record(
        id=record_id,
        kind="image+text" if ordered else "image",
        source=SOURCE,
        image_path=str(image),
        qa=ordered,
        modality=infer_modality(ordered),
        body_part=normalise_body_part(organ),
        split=split,
        extra={"file_name": image.name},
    )


def infer_modality(qas: Iterable[QA]) -> str | None:
    """The modality an image's MODALITY-type QA pairs vote for (rules in the module docstring)."""
    votes = [vote for qa in qas if _is_modality_question(qa) for vote in [_modality_vote(qa)] if vote]
    if not votes:
        return None
    counts = Counter(votes)
    best = max(counts.values())
    return next(vote for vote in votes if counts[vote] == best)


def _is_modality_question(qa: QA) -> bool:
    question_type: Any = qa.extra.get("question_type")
    return isinstance(question_type, str) and "MODALITY" in question_type.upper()


def _modality_vote(qa: QA) -> str | None:
    question = qa.question.lower()
    if _NEGATED.search(question):
        return None
    from_answer = normalise_modality(qa.answer)
    if from_answer:
        return from_answer
    mentioned = find_modalities(question)
    if len(mentioned) != 1:
        return None
    if qa.answer.lower() == "yes" and _ASKS_IDENTITY.match(question):
        return mentioned[0]
    return mentioned[0] if _PRESUPPOSES.search(question) else None
