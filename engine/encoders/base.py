"""The `Encoder` protocol: images and/or texts in, float32 L2-normalised vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from PIL import Image


@runtime_checkable
class Encoder(Protocol):
    """One embedding space.

    name: the registry name it was created from (e.g. "minilm", "trained:/path").
    dim: vector dimension.
    space: "text", "clip" or "ssl": which collection index its vectors go to.
    modalities: {"text"}, {"image"} or {"image", "text"} (a CLIP-style space embeds both).
    """

    name: str
    dim: int
    space: str
    modalities: frozenset[str]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """texts -> float32 (n, dim), L2-normalised rows."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> float32 (n, dim), L2-normalised rows."""
        ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """float (n, dim) -> float32 (n, dim) with unit rows (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
