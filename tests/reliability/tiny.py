"""Tiny, deterministic pieces for reliability tests: a hashed bag-of-words text encoder and synthetic reports.

`HashEncoder` loads nothing (no torch, no weights), so a child process that ingests with it starts in well
under a second; the same text always gives the same unit vector, so a stored record's own text finds it
with score 1.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.datasets.record import Record
from engine.encoders import register
from engine.encoders.base import l2_normalise

ENCODER = "test-hash"
DIM = 64
WORDS = (
    "lung heart liver kidney brain spine chest pelvis effusion nodule fracture mass opacity edema "
    "hemorrhage pneumothorax cardiomegaly atelectasis infiltrate calcified normal stable mild severe"
).split()


class HashEncoder:
    """Text-only encoder: each token adds 1 to the dimension its CRC32 picks; rows L2-normalised."""

    name = ENCODER
    dim = DIM
    space = "text"
    modalities = frozenset({"text"})

    def __init__(self, **_: object) -> None:
        pass

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in re.findall(r"\w+", text.lower()):
                vectors[row, zlib.crc32(token.encode()) % DIM] += 1.0
        return l2_normalise(vectors)

    def encode_images(self, images: Sequence) -> np.ndarray:
        raise NotImplementedError("HashEncoder encodes text only")


def register_hash_encoder() -> HashEncoder:
    """Make "test-hash" a registry name (so a collection built with it reopens) and return an instance."""
    register(ENCODER, "tests.reliability.tiny:HashEncoder")
    return HashEncoder()


def synthetic_reports(count: int, start: int = 0, prefix: str = "synth") -> list[Record]:
    """`count` report records with distinct, deterministic texts (ids `<prefix>:00000` ...)."""
    records = []
    for number in range(start, start + count):
        words = [WORDS[(number * 7 + step * 3) % len(WORDS)] for step in range(6)]
        text = f"report {prefix} {number}: " + " ".join(words)
        records.append(
            Record(
                id=f"{prefix}:{number:05d}",
                kind="report",
                source=prefix,
                findings=text,
                modality="XR" if number % 2 else "CT",
            )
        )
    return records


def db_path(home: Path, collection: str = "default") -> Path:
    return Path(home) / "collections" / collection / "records.sqlite"
