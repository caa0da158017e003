"""Ingest: records -> (decode images) -> encoders per space (+ concept linking) -> one SQLite batch -> indexes.

Reader -> mapper -> writer with per-stage timings, as clip-retrieval's runner. Each batch is one SQLite
transaction, so a crash loses at most the batch in flight; indexes catch up from SQLite's change log.
The next batch's images decode on the thread pool while the current batch is encoded (`prefetch`), so the
"read" seconds count only the time the encoders waited for pixels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm import tqdm

from engine.collection import Collection
from engine.datasets.record import Record
from engine.encoders.base import Encoder
from engine.errors import ImageReadError

logger = logging.getLogger(__name__)


# record id -> [{concept_id, polarity, field, start, end, sentence}]
ConceptLinker = Callable[[Sequence[Record]], Mapping[str, Sequence[Mapping[str, Any]]]]


@dataclass
class IngestSummary:
    """What one ingest did; `failed` holds (path, reason) of every image that could not be read."""

    source: str
    total: int = 0
    added: int = 0
    already_present: int = 0
    missing_images: int = 0  # records the loader left out because their image file does not exist
    embedded: dict[str, int] = field(default_factory=dict)  # space -> stored records newly embedded in it
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(
        default_factory=lambda: {"read": 0.0, "encode": 0.0, "link": 0.0, "write": 0.0, "index": 0.0}
    )

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "total": self.total,
            "added": self.added,
            "already_present": self.already_present,
            "missing_images": self.missing_images,
            "embedded_existing": dict(self.embedded),
            "failed_images": len(self.failed),
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "seconds_total": round(sum(self.seconds.values()), 2),
        }


def load_image(path: str | Path | BinaryIO) -> Any:
    """Open, size-check and fully decode an image as RGB; raises ImageReadError naming the path and the problem."""
    from engine.encoders.images import read_image

    return read_image(path, lambda image: image.convert("RGB"))


def ingest_records(
    collection: Collection,
    records: Sequence[Record],
    encoders: Mapping[str, Encoder],
    *,
    source: str,
    batch_size: int = 256,
    decode_workers: int = 4,
    linker: ConceptLinker | None = None,
    progress: bool = True,
    prefetch: bool = True,
) -> IngestSummary:
    """Add `records` to `collection`, embedding them in every space of `encoders` (space -> Encoder).

    Records already in the collection are skipped; unreadable images are logged, counted and skipped.
    `prefetch` decodes the next batch's images while the current batch is encoded (False: one after the other).
    """
    summary = IngestSummary(source=source, total=len(records))
    for space, encoder in encoders.items():
        collection.ensure_space(space, encoder.name, encoder.dim)
    known = collection.existing_ids(r.id for r in records)
    summary.already_present = len(known)
    pending = [r for r in records if r.id not in known]
    needs_pixels = any("image" in e.modalities for e in encoders.values())
    bar = tqdm(total=len(pending), desc=f"ingest {source}", unit="rec", disable=not progress)
    batches = [pending[start : start + batch_size] for start in range(0, len(pending), batch_size)]
    with ThreadPoolExecutor(max_workers=max(1, decode_workers)) as pool:
        decoding = _start_decode(batches[0], pool, needs_pixels) if batches else []
        for position, batch in enumerate(batches):
            current = decoding
            following = batches[position + 1] if position + 1 < len(batches) else []
            if prefetch and following:  # the pool decodes the next batch while this one is encoded
                decoding = _start_decode(following, pool, needs_pixels)
            _ingest_batch(collection, batch, encoders, current, linker, summary)
            if not prefetch and following:
                decoding = _start_decode(following, pool, needs_pixels)
            bar.update(len(batch))
        backfill = _records_missing_spaces(collection, [r for r in records if r.id in known], encoders)
        for start in range(0, len(backfill), batch_size):
            _backfill_batch(collection, backfill[start : start + batch_size], encoders, pool, summary)
    bar.close()
    started = time.perf_counter()
    collection.sync()
    summary.seconds["index"] += time.perf_counter() - started
    logger.info(
        "ingested %s: %d added, %d already present, %d unreadable images; stage seconds %s",
        source,
        summary.added,
        summary.already_present,
        len(summary.failed),
        {k: round(v, 1) for k, v in summary.seconds.items()},
    )
    return summary


def _ingest_batch(
    collection: Collection,
    batch: list[Record],
    encoders: Mapping[str, Encoder],
    decoding: list[tuple[Record, Future]],
    linker: ConceptLinker | None,
    summary: IngestSummary,
) -> None:
    started = time.perf_counter()
    images = _finish_decode(decoding, summary)
    kept = [r for r in batch if r.image_path is None or r.id in images]
    summary.seconds["read"] += time.perf_counter() - started

    started = time.perf_counter()
    vectors = {space: _encode(encoder, kept, images) for space, encoder in encoders.items()}
    summary.seconds["encode"] += time.perf_counter() - started

    started = time.perf_counter()
    concepts = linker(kept) if linker else {}
    summary.seconds["link"] += time.perf_counter() - started

    started = time.perf_counter()
    summary.added += len(collection.add(kept, vectors, concepts))
    summary.seconds["write"] += time.perf_counter() - started


def _records_missing_spaces(
    collection: Collection, records: list[Record], encoders: Mapping[str, Encoder]
) -> list[Record]:
    """Records already stored that lack a vector in one of the spaces (a space added after they were)."""
    missing: set[str] = set()
    for space, encoder in encoders.items():
        wanted = [
            r.id
            for r in records
            if (r.image_path and "image" in encoder.modalities)
            or ("text" in encoder.modalities and r.text().strip())
        ]
        missing |= collection.ids_without_vector(space, wanted)
    return [r for r in records if r.id in missing]


def _backfill_batch(
    collection: Collection,
    batch: list[Record],
    encoders: Mapping[str, Encoder],
    pool: ThreadPoolExecutor,
    summary: IngestSummary,
) -> None:
    """Embed stored records in the spaces they lack (e.g. after `medsearch train clip`)."""
    started = time.perf_counter()
    images = _finish_decode(_start_decode(batch, pool, keep=True), summary)
    summary.seconds["read"] += time.perf_counter() - started
    for space, encoder in encoders.items():
        lacking = collection.ids_without_vector(space, [r.id for r in batch])
        chosen = [r for r in batch if r.id in lacking and (r.image_path is None or r.id in images)]
        if not chosen:
            continue
        started = time.perf_counter()
        vectors = _encode(encoder, chosen, images)
        summary.seconds["encode"] += time.perf_counter() - started
        started = time.perf_counter()
        summary.embedded[space] = summary.embedded.get(space, 0) + collection.add_vectors(space, vectors)
        summary.seconds["write"] += time.perf_counter() - started


def _start_decode(batch: list[Record], pool: ThreadPoolExecutor, keep: bool) -> list[tuple[Record, Future]]:
    """Submit the decoding of every image of `batch` to the pool (PIL decodes outside the GIL)."""

    def decode(record: Record) -> Any:
        try:
            image = load_image(record.image_path)  # type: ignore[arg-type]
            return image if keep else True
        except ImageReadError as e:
            return e

    return [(record, pool.submit(decode, record)) for record in batch if record.image_path]


def _finish_decode(decoding: list[tuple[Record, Future]], summary: IngestSummary) -> dict[str, Any]:
    """record id -> decoded RGB image (or True when pixels are not needed); failures go to the summary."""
    out: dict[str, Any] = {}
    for record, future in decoding:
        result = future.result()
        if isinstance(result, ImageReadError):
            logger.warning("skipping %s: %s", record.id, result)
            summary.failed.append((result.path, result.reason))
        else:
            out[record.id] = result
    return out


def _encode(encoder: Encoder, records: list[Record], images: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Vectors of one space: images for image records (when the encoder takes images), text otherwise."""
    out: dict[str, np.ndarray] = {}
    if "image" in encoder.modalities:
        with_pixels = [r for r in records if r.id in images]
        if with_pixels:
            vectors = encoder.encode_images([images[r.id] for r in with_pixels])
            out.update(zip((r.id for r in with_pixels), vectors))
    if "text" in encoder.modalities:
        # a text-only space embeds every text; a joint space embeds text only where there is no image
        text_records = [r for r in records if r.id not in out and r.text().strip()]
        if text_records:
            vectors = encoder.encode_texts([r.text() for r in text_records])
            out.update(zip((r.id for r in text_records), vectors))
    return out
