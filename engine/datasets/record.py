"""The `Record`: one image, one report, or an image with its report/caption, as every loader yields it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

RecordKind = Literal["image", "report", "image+text"]

# order matters: the text encoder truncates long texts, so the most telling fields come first
TEXT_FIELDS: tuple[str, ...] = ("findings", "impression", "diagnosis", "caption", "history")


@dataclass(frozen=True)
class QA:
    """One question-answer pair attached to an image (VQA-RAD, SLAKE)."""

    question: str
    answer: str
    answer_type: str | None = None  # "CLOSED" | "OPEN" (normalised, stripped)
    qid: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """One searchable item.

    id: stable across re-ingests: ``f"{source}:{original id}"`` (e.g. ``"vqa-rad:synpic54610"``).
    kind: "image" (no text), "report" (no image) or "image+text".
    image_path: absolute path of the image file, or None.
    modality: normalised ("CT", "MR", "XR", "US", "PET", "NM", ...) or None.
    body_part: normalised lower-case region ("head", "chest", "abdomen", "pelvis", ...) or None.
    labels: normalised finding / diagnosis labels (e.g. IU X-ray MeSH `Problems`).
    extra: anything else the source holds (case title, age, sex, boxes, ...), JSON-serialisable.
    """

    id: str
    kind: RecordKind
    source: str
    image_path: str | None = None
    findings: str | None = None
    impression: str | None = None
    caption: str | None = None
    history: str | None = None
    diagnosis: str | None = None
    qa: tuple[QA, ...] = ()
    modality: str | None = None
    body_part: str | None = None
    plane: str | None = None
    labels: tuple[str, ...] = ()
    split: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def text(self, include_qa: bool = True) -> str:
        """All text of the record in one string (the text that is embedded and BM25-indexed)."""
        parts = [getattr(self, name) for name in TEXT_FIELDS]
        out = [p.strip() for p in parts if p and p.strip()]
        if include_qa and self.qa:
            out.extend(f"{qa.question.strip()} {qa.answer.strip()}" for qa in self.qa)
        return "\n".join(out)
