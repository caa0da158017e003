"""Shared image preprocessing: grey, letterboxed, fixed-size arrays for the trained towers and baselines.

Radiology images are grey at heart (RGB copies repeat one channel) and their anatomy must not be
stretched, so every image is converted to one channel and letterboxed (aspect kept, black padding)
into a square. The same function feeds training, `trained:` encoders and the raw-pixel baseline, so
what a checkpoint saw in training is what it sees at query time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.encoders.base import l2_normalise
from engine.errors import ImageReadError

if TYPE_CHECKING:
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 20_000 * 20_000


@dataclass(frozen=True)
class ImagePreprocess:
    """How an image becomes a tensor: grey (1 channel), letterboxed to `size` px, scaled (x/255 - mean) / std.

    Saved in a checkpoint's `config.json` under "preprocessing" so loading needs nothing else.
    """

    size: int = 128
    channels: int = 1
    mean: float = 0.5
    std: float = 0.25
    resize: str = "letterbox"

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for `config.json`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ImagePreprocess:
        """Inverse of `as_dict`; unknown keys are ignored so newer checkpoints still load."""
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def read_image(path: str | Path, convert: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Open, size-check and fully decode an image file, then `convert` it (the one image reader of medsearch).

    Args:
        path: image file (PNG, JPEG, ...).
        convert: applied to the decoded image (e.g. `to_grey`, or RGB conversion).

    Raises:
        ImageReadError: missing, unreadable or oversized file (names the path and the problem).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageReadError(
                    str(path),
                    f"{image.width}x{image.height} pixels exceeds the limit of {MAX_IMAGE_PIXELS} "
                    "(possible decompression bomb)",
                )
            image.load()
            return convert(image)
    except ImageReadError:
        raise
    except FileNotFoundError as e:
        raise ImageReadError(str(path), "file not found") from e
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(str(path), f"unreadable image ({type(e).__name__}: {e})") from e


def open_image(path: str | Path) -> Image.Image:
    """Open and decode an image file as grey ("L"), at full size (training, ingest and queries alike: a JPEG
    decoded downscaled differs by up to a pixel of letterbox shift)."""
    return read_image(path, to_grey)


def to_grey(image: Image.Image) -> Image.Image:
    """Any PIL image -> mode "L"; transparent pixels (RGBA, LA, P with transparency) become black."""
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / max(high - low, 1e-6) * 255.0
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    return image.convert("L")


def letterbox(image: Image.Image, size: int) -> np.ndarray:
    """Grey image -> uint8 (size, size): longer side scaled to `size`, centred on black.

    Args:
        image: a PIL image (converted to "L" when it is not).
        size: output side in pixels.

    Returns:
        uint8 array (size, size).
    """
    from PIL import Image

    grey = image if image.mode == "L" else to_grey(image)
    scale = size / max(grey.width, grey.height)
    width, height = max(1, round(grey.width * scale)), max(1, round(grey.height * scale))
    resized = grey.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    canvas = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - height) // 2, (size - width) // 2
    canvas[top : top + height, left : left + width] = np.asarray(resized, dtype=np.uint8)
    return canvas


def letterbox_batch(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """PIL images -> uint8 (n, size, size) grey letterboxed arrays."""
    if not images:
        return np.zeros((0, size, size), dtype=np.uint8)
    return np.stack([letterbox(image, size) for image in images])


def normalise_pixels(pixels: torch.Tensor, preprocess: ImagePreprocess) -> torch.Tensor:
    """uint8 or [0, 1] float (n, H, W) / (n, 1, H, W) -> float32 (n, channels, H, W), (x - mean) / std."""
    import torch

    tensor = pixels.float()
    if pixels.dtype == torch.uint8:
        tensor = tensor / 255.0
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(1)
    tensor = (tensor - preprocess.mean) / preprocess.std
    if preprocess.channels != 1:
        tensor = tensor.expand(-1, preprocess.channels, -1, -1)
    return tensor.contiguous()


def images_to_tensor(images: Sequence[Image.Image], preprocess: ImagePreprocess) -> torch.Tensor:
    """PIL images -> float32 (n, channels, size, size), ready for a trained tower."""
    import torch

    return normalise_pixels(torch.from_numpy(letterbox_batch(images, preprocess.size)), preprocess)


def pixel_thumbnails(images: Sequence[Image.Image], size: int = 32) -> np.ndarray:
    """The raw-pixel baseline: grey letterboxed `size`x`size` thumbnails, flattened.

    Returns:
        float32 (n, size * size), L2-normalised rows (so a dot product is the cosine).
    """
    thumbnails = letterbox_batch(images, size).reshape(len(images), -1).astype(np.float32) / 255.0
    return l2_normalise(thumbnails)
