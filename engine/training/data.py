"""Training data: the named validation split, image-text pairs per source, and an in-memory image bank.

Validation split "medsearch-val-v1" (the only images any figure in a model card is measured on):

- MedPix: a case is held out when ``int(md5(f"{salt}:{case_id}"), 16) % 10_000 < fraction * 10_000``
  (salt "medsearch-val-v1", fraction 0.5). All MedPix images shipped here are official *dev* cases, so
  half of those cases (all their images) are validation and the other half may be trained on.
- SLAKE: every image of the official ``validation`` split.
- VQA-RAD: an image is held out when its synpic id is an image of a held-out MedPix case (VQA-RAD is built
  from MedPix; otherwise a held-out picture could be trained on under another name).
- Anything else (a user's folder): never held out.

Training also skips near-duplicates of held-out images (`near_duplicate_rows`): SLAKE's official split cuts CT
and MR volumes slice by slice, so a held-out slice's neighbour (correlation >= 0.95 of 24 px thumbnails; 107 of
the 450 SLAKE training images) would otherwise be trained on.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from engine.datasets.record import Record
from engine.encoders.images import letterbox, open_image
from engine.errors import ImageReadError
from engine.training.config import SplitConfig

logger = logging.getLogger(__name__)

METADATA_FIELDS: tuple[str, ...] = ("modality", "body_part", "plane")
NEAR_DUPLICATE_SIZE = 24
_SYNPIC = re.compile(r"synpic\d+")
_MAX_TEXT_CHARS = 400
_NEGATIVE_ANSWERS = frozenset({"no", "none", "normal", "not seen", "nothing"})


class Split(NamedTuple):
    """Records cut in two by `validation_split`: `rule` names and describes the held-out set."""

    train: list[Record]
    validation: list[Record]
    rule: str


@dataclass(frozen=True)
class Pair:
    """One image-text pair: the image file, one text describing it, and the image's metadata."""

    image_path: str
    text: str
    meta: dict[str, Any]


def split_rule(config: SplitConfig | None = None) -> str:
    """Human-readable definition of the held-out set (written into every model card)."""
    config = config or SplitConfig()
    return (
        f"{config.salt}: MedPix case held out iff int(md5('{config.salt}:'+case_id),16) % 10000 < "
        f"{int(config.medpix_fraction * 10_000)}; SLAKE split == 'validation'; VQA-RAD images whose synpic id "
        "belongs to a held-out MedPix case; other sources never held out"
    ) + (
        f"; training images whose {NEAR_DUPLICATE_SIZE} px grey thumbnail correlates >= "
        f"{config.near_duplicate_correlation} with a held-out image's are not trained on"
        if config.near_duplicate_correlation is not None
        else ""
    )


def medpix_case_held_out(case_id: str, config: SplitConfig | None = None) -> bool:
    """Whether a MedPix case id (e.g. "MPX1009") is in the validation split."""
    config = config or SplitConfig()
    digest = int(hashlib.md5(f"{config.salt}:{case_id}".encode()).hexdigest(), 16)
    return digest % 10_000 < int(config.medpix_fraction * 10_000)


def _medpix_case(record: Record) -> str:
    case = record.extra.get("case_id") if record.extra else None
    return str(case) if case else record.id.split(":", 1)[-1].split("_", 1)[0]


def _synpic(record: Record) -> str | None:
    match = _SYNPIC.search(record.id)
    return match.group(0) if match else None


def validation_split(records: Iterable[Record], config: SplitConfig | None = None) -> Split:
    """Cut records into training and held-out validation records (rule in the module docstring).

    Args:
        records: any records; those without an image still follow the rule by source and case.
        config: the split's salt and MedPix fraction.

    Returns:
        `Split(train, validation, rule)`, each list in input order.
    """
    config = config or SplitConfig()
    records = list(records)
    held_cases = {
        _medpix_case(r)
        for r in records
        if r.source == "medpix" and medpix_case_held_out(_medpix_case(r), config)
    }
    held_synpics = {
        _synpic(r) for r in records if r.source == "medpix" and _medpix_case(r) in held_cases and _synpic(r)
    }
    train: list[Record] = []
    validation: list[Record] = []
    for record in records:
        if record.source == "medpix":
            held = _medpix_case(record) in held_cases
        elif record.source == "slake":
            held = record.split == "validation"
        elif record.source == "vqa-rad":
            held = _synpic(record) in held_synpics
        else:
            held = False
        (validation if held else train).append(record)
    logger.info("validation split %s: %d train, %d held out", config.salt, len(train), len(validation))
    return Split(train=train, validation=validation, rule=split_rule(config))


def tuning_split(train: Iterable[Record], fraction: float = 0.2, salt: str = "medsearch-tune-v1") -> Split:
    """A train-internal split for choosing settings without touching the validation split.

    Groups (a MedPix case, any other record's image) go to the tuning side when
    ``int(md5(f"{salt}:{group}"), 16) % 10_000 < fraction * 10_000``.

    Args:
        train: training records only (`validation_split(...).train`).
        fraction: share of groups held out for tuning.
        salt: names the split.

    Returns:
        `Split(train=fit part, validation=tuning part, rule)`.
    """
    fit: list[Record] = []
    tune: list[Record] = []
    for record in train:
        group = _medpix_case(record) if record.source == "medpix" else record.id
        digest = int(hashlib.md5(f"{salt}:{group}".encode()).hexdigest(), 16)
        (tune if digest % 10_000 < int(fraction * 10_000) else fit).append(record)
    rule = f"{salt}: group (MedPix case, else record id) to tuning iff md5 % 10000 < {int(fraction * 10_000)}"
    return Split(train=fit, validation=tune, rule=rule)


def image_records(records: Iterable[Record]) -> list[Record]:
    """Records that carry an existing image file."""
    return [r for r in records if r.image_path and Path(r.image_path).is_file()]


def _clean(text: str | None) -> str | None:
    if not text:
        return None
    collapsed = " ".join(text.split())
    return collapsed[:_MAX_TEXT_CHARS] if collapsed else None


def metadata_sentence(record: Record) -> str | None:
    """ "MR axial image of the head" from modality / plane / body part, or None when none is known."""
    words = [w for w in (record.modality, record.plane) if w]
    if not words and not record.body_part:
        return None
    region = f" of the {record.body_part}" if record.body_part else ""
    return f"{' '.join(words) or 'medical'} image{region}"


def qa_statements(record: Record, splits: Sequence[str] = ("train",)) -> list[str]:
    """Statements from an image's QA pairs of the given splits: "question answer", negative answers dropped."""
    out = []
    for qa in record.qa:
        if qa.extra.get("split", record.split) not in splits:
            continue
        if qa.answer.strip().lower() in _NEGATIVE_ANSWERS:
            continue
        out.append(f"{qa.question.strip()} {qa.answer.strip()}")
    return out


def record_texts(record: Record) -> list[tuple[str, str]]:
    """(kind, text) pairs describing one image record, the caption-like text first, duplicates removed.

    MedPix: caption, case findings, diagnosis, "caption + diagnosis", metadata sentence.
    SLAKE: the composed caption (modality, location, detected organs), organ list, metadata, train QA facts.
    VQA-RAD: metadata sentence, then statements from its train QA pairs.
    Other sources: caption / findings / impression / diagnosis, then metadata.
    """
    candidates: list[tuple[str, str | None]] = []
    if record.source == "medpix":
        combined = f"{record.caption} {record.diagnosis}" if record.caption and record.diagnosis else None
        candidates += [
            ("caption", record.caption),
            ("findings", record.findings),
            ("diagnosis", record.diagnosis),
        ]
        candidates += [("caption+diagnosis", combined)]
    elif record.source == "slake":
        organs = [box.get("label") for box in (record.extra or {}).get("boxes", []) if box.get("label")]
        candidates += [("caption", record.caption), ("organs", ", ".join(dict.fromkeys(organs)) or None)]
    else:
        candidates += [
            (name, getattr(record, name)) for name in ("caption", "findings", "impression", "diagnosis")
        ]
    candidates.append(("metadata", metadata_sentence(record)))
    candidates += [("qa", statement) for statement in qa_statements(record)]
    seen: set[str] = set()
    texts = []
    for kind, text in candidates:
        cleaned = _clean(text)
        if cleaned and cleaned.lower() not in seen:
            seen.add(cleaned.lower())
            texts.append((kind, cleaned))
    return texts


def clip_pairs(records: Iterable[Record]) -> list[tuple[str, str, dict[str, Any]]]:
    """Image-text pairs built per source (see `record_texts`), for records with an existing image.

    Returns:
        (image_path, text, meta) tuples; meta holds id, source, modality, body_part, plane and the
        text's kind ("caption", "findings", "qa", ...). An image's caption-like text comes first.
    """
    pairs = []
    for record in image_records(records):
        meta = {"id": record.id, "source": record.source}
        meta.update({name: getattr(record, name) for name in METADATA_FIELDS})
        for kind, text in record_texts(record):
            pairs.append((str(record.image_path), text, {**meta, "kind": kind}))
    return pairs


def query_caption(record: Record) -> str | None:
    """The text that should retrieve this image in evaluation: its caption, else its first text."""
    texts = record_texts(record)
    by_kind = dict(texts)
    return by_kind.get("caption") or (texts[0][1] if texts else None)


def load_image_bank(paths: Sequence[str], size: int, progress: bool = True) -> tuple[np.ndarray, list[int]]:
    """Decode images once into memory: uint8 (n_ok, size, size) grey letterboxed, plus kept indices.

    Unreadable files are logged and skipped (their index is absent from the returned list).
    """
    arrays, kept = [], []
    for index, path in enumerate(tqdm(paths, desc="loading images", disable=not progress, leave=False)):
        try:
            arrays.append(letterbox(open_image(path), size))  # full decode, as ingest and search do
            kept.append(index)
        except ImageReadError as e:
            logger.warning("skipping image: %s", e)
    bank = np.stack(arrays) if arrays else np.zeros((0, size, size), dtype=np.uint8)
    return bank, kept


def near_duplicate_rows(
    bank: np.ndarray, held_out: np.ndarray, threshold: float, size: int = NEAR_DUPLICATE_SIZE
) -> np.ndarray:
    """bool (n,): rows of `bank` whose `size` px thumbnail correlates >= `threshold` with one of `held_out`.

    Args:
        bank: uint8 (n, s, s) training images; held_out: uint8 (m, s, s) held-out images, same side s.
        threshold: Pearson correlation of the block-averaged grey thumbnails.
    """
    if not len(bank) or not len(held_out):
        return np.zeros(len(bank), dtype=bool)

    def thumbnails(images: np.ndarray) -> np.ndarray:
        side = images.shape[1]
        edges = np.linspace(0, side, size + 1).round().astype(int)
        starts, widths = edges[:-1], np.diff(edges)
        pooled = np.add.reduceat(np.add.reduceat(images.astype(np.float64), starts, axis=1), starts, axis=2)
        flat = (pooled / np.outer(widths, widths)).reshape(len(images), -1)  # block means
        flat -= flat.mean(axis=1, keepdims=True)
        return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-9)

    return (thumbnails(bank) @ thumbnails(held_out).T >= threshold).any(axis=1)


def load_training_bank(
    train: Sequence[Record], held_out: Sequence[Record], size: int, split: SplitConfig, progress: bool = True
) -> tuple[np.ndarray, list[Record], int]:
    """Decode the training images (`load_image_bank`) minus the near-duplicates of held-out images.

    Returns:
        (uint8 (n, size, size) bank, the records of its rows, how many near-duplicates were dropped).
    """
    bank, kept = load_image_bank([str(r.image_path) for r in train], size, progress)
    records = [train[i] for i in kept]
    if split.near_duplicate_correlation is None or not len(bank):
        return bank, records, 0
    held, _ = load_image_bank([str(r.image_path) for r in image_records(held_out)], size, progress)
    drop = near_duplicate_rows(bank, held, split.near_duplicate_correlation)
    if drop.any():
        logger.info(
            "not training on %d image(s) that nearly duplicate a held-out image (%s)",
            int(drop.sum()),
            ", ".join(sorted({records[i].source for i in np.flatnonzero(drop)})),
        )
    return bank[~drop], [r for r, dropped in zip(records, drop, strict=True) if not dropped], int(drop.sum())


def metadata_vocab(records: Sequence[Record]) -> dict[str, list[str]]:
    """Sorted values of each metadata field seen in `records` (fields with fewer than 2 values dropped)."""
    vocab = {
        name: sorted({getattr(r, name) for r in records if getattr(r, name)}) for name in METADATA_FIELDS
    }
    return {name: values for name, values in vocab.items() if len(values) >= 2}


def metadata_labels(records: Sequence[Record], vocab: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """field -> int64 (n,) class index per record, -1 where unknown."""
    labels = {}
    for name, values in vocab.items():
        index = {value: i for i, value in enumerate(values)}
        labels[name] = np.array([index.get(getattr(r, name), -1) for r in records], dtype=np.int64)
    return labels


def load_shared_records(data_dir: str | Path) -> list[Record]:
    """Image records of the shared VQA-RAD, SLAKE and MedPix folders under `data_dir` (through the loaders)."""
    folders = {"vqa-rad": "vqa-rad", "slake": "slake", "medpix": "medpix-2.0"}
    records: list[Record] = []
    for name, folder in folders.items():
        path = Path(data_dir) / folder
        if path.is_dir():
            records.extend(_load(name, path))
        else:
            logger.warning("no %s folder at %s", name, path)
    return records


def _load(name: str, path: Path) -> list[Record]:
    from engine.datasets import load

    return list(load(name, path))
