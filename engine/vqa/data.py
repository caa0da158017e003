"""VQA items, answer normalisation, image-grouped folds and the per-(image, question) features."""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.datasets.record import Record
from engine.encoders.base import Encoder
from engine.errors import DatasetFormatError, QueryError

logger = logging.getLogger(__name__)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans({c: " " for c in string.punctuation})
_YES = {"yes", "y", "true", "yeah", "yep"}
_NO = {"no", "n", "false", "nope", "none seen"}
_OPTIONS = re.compile(r"(?:^|[\s,])([\w\- ]{1,40}?)\s+or\s+([\w\- ]{1,40}?)\s*\??$")
_LEAD_WORDS = re.compile(
    r"^(?:is|are|was|were|does|do|did|can|could|which|what|this|that|it|the|a|an|image|there|in|of|"
    r"these|those|organ|side|one|more|is this|an?)\s+"
)


def normalise_answer(text: str) -> str:
    """Canonical answer string: lower case, punctuation and articles removed, spaces collapsed, yes/no canonical.

    >>> normalise_answer(" Yes. ")
    'yes'
    >>> normalise_answer("The Left Lung!")
    'left lung'
    """
    lowered = text.lower().translate(_PUNCTUATION)
    collapsed = " ".join(_ARTICLES.sub(" ", lowered).split())
    if collapsed in _YES:
        return "yes"
    if collapsed in _NO:
        return "no"
    return collapsed


def closed_options(question: str, vocabulary: Collection[str] | None = None) -> tuple[str, ...] | None:
    """The options of an "X or Y?" question, normalised, else None.

    Without `vocabulary`: the phrases around "or" with leading question words dropped ("Is this a CT or MRI?"
    -> ("ct", "mri")). With it: the longest word suffix of the text before "or" and the longest word prefix of
    the text after it that are answers in `vocabulary` ("Is the lesion on the left or right side?" ->
    ("left", "right")); None when neither side names a known answer.
    """
    text = normalise_answer(question)
    if " or " not in f" {text} ":
        return None
    if vocabulary is not None:
        left, _, right = text.rpartition(" or ")
        left_words, right_words = left.split(), right.split()
        found = []
        for n in range(min(4, len(left_words)), 0, -1):
            if " ".join(left_words[-n:]) in vocabulary:
                found.append(" ".join(left_words[-n:]))
                break
        for n in range(min(4, len(right_words)), 0, -1):
            if " ".join(right_words[:n]) in vocabulary:
                found.append(" ".join(right_words[:n]))
                break
        return tuple(dict.fromkeys(found)) or None
    match = _OPTIONS.search(question.strip().lower())
    if match is None:
        return None
    first = match.group(1).strip()
    for _ in range(4):  # drop leading question words: "is this a ct" -> "ct"
        stripped = _LEAD_WORDS.sub("", first)
        if stripped == first:
            break
        first = stripped
    options = tuple(normalise_answer(option) for option in (first, match.group(2)))
    return options if all(options) and options[0] != options[1] else None


@dataclass(frozen=True)
class VqaItem:
    """One (image, question, answer) triple.

    qid: ``f"{dataset}:{original qid}"``, unique within a dataset.
    answer: normalised with `normalise_answer`; raw_answer keeps the original.
    answer_type: "CLOSED" or "OPEN".
    """

    qid: str
    record_id: str
    image_path: str
    question: str
    answer: str
    answer_type: str
    split: str
    raw_answer: str = ""
    entities: tuple[str, ...] = ()  # organ / lesion annotations of the image (SLAKE boxes), for graph facts
    category: str | None = None  # what the question asks about (VQA-RAD question_type, SLAKE content_type)


def question_category(extra: Mapping[str, Any]) -> str | None:
    """The dataset's own label of what a question asks about, upper-cased, first label only.

    VQA-RAD's ``question_type`` ("PRES", "POS", "MODALITY", ..., sometimes "PRES, ATTRIB") and SLAKE's
    ``content_type`` ("Organ", "Position", "KG", ...) become "PRES", "MODALITY", "KG", ... (None when absent).
    """
    value = extra.get("question_type") or extra.get("content_type")
    if not isinstance(value, str) or not value.strip():
        return None
    return value.split(",")[0].strip().upper() or None


def vqa_items(records: Sequence[Record], dataset: str) -> list[VqaItem]:
    """Every question of every image record with a split, as `VqaItem`s (records without image or split are skipped).

    Raises:
        DatasetFormatError: a question has no answer type ("CLOSED"/"OPEN").
    """
    items: list[VqaItem] = []
    for record in records:
        if record.image_path is None or record.split is None:
            continue
        boxes = record.extra.get("boxes") or ()
        entities = tuple(
            dict.fromkeys(str(b["label"]) for b in boxes if isinstance(b, dict) and b.get("label"))
        )
        for index, qa in enumerate(record.qa):
            answer_type = (qa.answer_type or "").upper()
            if answer_type not in ("CLOSED", "OPEN"):
                raise DatasetFormatError(
                    f"{record.id} question {qa.qid!r}: answer type {qa.answer_type!r}, expected CLOSED or OPEN"
                )
            qid = qa.qid if qa.qid is not None else f"{record.id}#{index}"
            items.append(
                VqaItem(
                    qid=f"{dataset}:{qid}",
                    record_id=record.id,
                    image_path=record.image_path,
                    question=qa.question.strip(),
                    answer=normalise_answer(qa.answer),
                    answer_type=answer_type,
                    split=record.split,
                    raw_answer=qa.answer,
                    entities=entities,
                    category=question_category(qa.extra),
                )
            )
    logger.info("%s: %d questions on %d images", dataset, len(items), len({i.record_id for i in items}))
    return items


def grouped_folds(
    items: Sequence[VqaItem], n_folds: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split items into `n_folds` folds grouped by image (no image in both train and test), seeded.

    Returns:
        One ``(train_indices, test_indices)`` pair per fold, int64 arrays into `items`.

    Raises:
        QueryError: fewer distinct images than folds.
    """
    images = sorted({item.record_id for item in items})
    if len(images) < n_folds or n_folds < 2:
        raise QueryError(
            f"{len(images)} distinct images cannot make {n_folds} grouped folds (need >= 2 and <= images)"
        )
    order = np.random.default_rng(seed).permutation(len(images))
    fold_of = {images[i]: rank % n_folds for rank, i in enumerate(order)}
    assignment = np.array([fold_of[item.record_id] for item in items])
    return [(np.flatnonzero(assignment != f), np.flatnonzero(assignment == f)) for f in range(n_folds)]


@dataclass(frozen=True)
class VqaFeatures:
    """Features aligned with a list of `VqaItem`s.

    question: float32 (n, d_text), L2-normalised question embeddings.
    images: space name -> float32 (n, d_space), L2-normalised embedding of each item's image (repeated per question).
    """

    question: np.ndarray
    images: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.question)

    def subset(self, indices: np.ndarray) -> VqaFeatures:
        """The rows `indices` (int array) of every block."""
        return VqaFeatures(self.question[indices], {name: v[indices] for name, v in self.images.items()})

    def without_images(self) -> VqaFeatures:
        """The question block only."""
        return VqaFeatures(self.question, {})

    def matrix(self) -> np.ndarray:
        """All blocks side by side: float32 (n, d_text + sum of d_space)."""
        return np.hstack([self.question, *self.images.values()]).astype(np.float32)


def encode_features(
    items: Sequence[VqaItem], text_encoder: Encoder, image_encoders: Mapping[str, Encoder] | None = None
) -> VqaFeatures:
    """Embed each question with `text_encoder` and each distinct image once per image encoder.

    Args:
        items: the questions.
        text_encoder: e.g. ``create("minilm")``; `encode_texts` -> (n, d_text).
        image_encoders: space name -> encoder with `encode_images` (e.g. trained clip / ssl); may be empty.
    """
    from engine.ingest import load_image

    question = np.asarray(text_encoder.encode_texts([item.question for item in items]), dtype=np.float32)
    images: dict[str, np.ndarray] = {}
    if image_encoders:
        paths = sorted({item.image_path for item in items})
        row = {path: i for i, path in enumerate(paths)}
        pictures = [load_image(path) for path in paths]
        rows = np.array([row[item.image_path] for item in items], dtype=np.int64)
        for name, encoder in image_encoders.items():
            images[name] = np.asarray(encoder.encode_images(pictures), dtype=np.float32)[rows]
            logger.info("encoded %d images in space %s", len(paths), name)
    return VqaFeatures(question, images)
