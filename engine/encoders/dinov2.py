"""`dinov2:PATH_OR_HUB_ID`: a DINOv2 vision transformer (through transformers) as an "ssl" image encoder.

`create("dinov2:facebook/dinov2-small")` loads the published weights when the hub (or its cache) is
reachable; `create("dinov2:/models/dinov2-small")` loads a folder written by `save_pretrained`, offline.
When the folder has no image processor config, DINOv2's standard one is used (bicubic resize of the
short side, centre crop to 224 px, or the model's `image_size` when smaller; ImageNet mean/std). Published
configs say `image_size` 518, the pretraining size of the position embeddings, not the evaluation crop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.encoders.base import l2_normalise
from engine.errors import EncoderUnavailableError

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

POOLINGS: tuple[str, ...] = ("cls", "mean", "cls+mean")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _default_processor(image_size: int) -> Any:
    """DINOv2's preprocessing (short side resized to 256/224 of the crop, centre crop) for a given crop size."""
    from transformers import BitImageProcessor

    crop = int(image_size)
    return BitImageProcessor(
        size={"shortest_edge": round(crop * 256 / 224)},
        crop_size={"height": crop, "width": crop},
        do_center_crop=True,
        resample=3,  # PIL bicubic
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        do_convert_rgb=True,
    )


class Dinov2Encoder:
    """DINOv2 behind the Encoder protocol: images -> float32 (n, hidden) (or 2 * hidden for "cls+mean").

    Args:
        model: a local folder (`save_pretrained`) or a hub id such as "facebook/dinov2-small".
        pooling: "cls" (the normalised class token), "mean" (mean of patch tokens) or "cls+mean".
        device: torch device.
        batch_size: images per forward pass.
    """

    space = "ssl"
    modalities = frozenset({"image"})

    def __init__(self, model: str, pooling: str = "cls", device: str = "cpu", batch_size: int = 16) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        try:
            import torch
            from transformers import AutoImageProcessor, AutoModel
        except ModuleNotFoundError as e:
            raise EncoderUnavailableError(
                f"the dinov2 encoder needs {e.name!r}: pip install transformers torch"
            ) from e
        started = time.perf_counter()
        local = Path(model).expanduser().is_dir()
        source = str(Path(model).expanduser()) if local else model
        try:
            self.model = AutoModel.from_pretrained(source, local_files_only=local).to(device).eval()
        except (OSError, ValueError) as e:
            hint = "" if local else "; no network? save the model with save_pretrained and pass that folder"
            raise EncoderUnavailableError(f"cannot load DINOv2 model {model!r}: {e}{hint}") from e
        if "dinov2" not in str(getattr(self.model.config, "model_type", "")):
            logger.warning(
                "%s is a %r model, not DINOv2; using it anyway", model, self.model.config.model_type
            )
        try:
            self.processor = AutoImageProcessor.from_pretrained(source, local_files_only=local)
        except (OSError, ValueError):
            logger.info("no image processor config in %s: using DINOv2's standard preprocessing", model)
            self.processor = _default_processor(min(int(self.model.config.image_size), 224))
        self.pooling = pooling
        self.device = torch.device(device)
        self.batch_size = batch_size
        hidden = int(self.model.config.hidden_size)
        self.dim = 2 * hidden if pooling == "cls+mean" else hidden
        self.name = f"dinov2:{model}"
        logger.info(
            "loaded DINOv2 %s (dim %d, %s) in %.1fs", model, self.dim, pooling, time.perf_counter() - started
        )

    def _pool(self, outputs: Any) -> Any:
        import torch

        cls = outputs.pooler_output
        first_patch = 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)  # after cls + registers
        mean = outputs.last_hidden_state[:, first_patch:].mean(dim=1)
        if self.pooling == "cls":
            return cls
        return mean if self.pooling == "mean" else torch.cat([cls, mean], dim=1)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> float32 (n, dim), L2-normalised."""
        import torch

        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = [image.convert("RGB") for image in images[start : start + self.batch_size]]
                pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
                outputs.append(self._pool(self.model(pixel_values=pixels)).float().cpu().numpy())
        return l2_normalise(np.concatenate(outputs))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError("DINOv2 embeds images only; use a 'clip' or 'text' space encoder for text")
