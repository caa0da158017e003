"""`trained:PATH`: an image tower this project trained (`medsearch train clip|ssl`), loaded from its folder.

A "clip" checkpoint embeds images and texts into one space: texts go through the locked text tower
(MiniLM) and the trained projection. An "ssl" checkpoint embeds images only. The folder's
`config.json` says which, and how images are preprocessed (see `engine.training.checkpoint`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.encoders.base import Encoder, l2_normalise
from engine.encoders.images import ImagePreprocess, letterbox_batch

if TYPE_CHECKING:
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)


class TrainedEncoder:
    """Encoder over a checkpoint folder: images -> float32 (n, dim), texts too when the kind is "clip".

    Args:
        path: the checkpoint folder (holding `config.json` and `model.safetensors`).
        device: torch device.
        batch_size: images per forward pass.
        untrained: build the same architecture with the checkpoint's seed but skip its weights
            (the "untrained tower" baseline).
        text_encoder: an already built text encoder to reuse (else `create(config["text_encoder"])`).
    """

    def __init__(
        self,
        path: str,
        device: str = "cpu",
        batch_size: int = 64,
        untrained: bool = False,
        text_encoder: Encoder | None = None,
    ) -> None:
        import torch

        from engine.training.checkpoint import read_config, read_weights, unprefixed
        from engine.training.models import text_projection, tower_from_config

        self.path = Path(path).expanduser()
        self.config = read_config(self.path)
        self.kind: str = self.config["kind"]
        self.space: str = self.config["space"]
        self.dim: int = int(self.config["dim"])
        self.name = f"trained:{path}"
        self.modalities = frozenset({"image", "text"} if self.kind == "clip" else {"image"})
        self.preprocess = ImagePreprocess.from_dict(self.config.get("preprocessing", {}))
        self.device = torch.device(device)
        self.batch_size = batch_size
        seed = int(self.config.get("seed", 0))
        with torch.random.fork_rng():  # seeded architecture init without touching the caller's RNG
            torch.manual_seed(seed)
            self.tower = tower_from_config(self.config)
            self.text_projection = None
            if self.kind == "clip":
                generator = torch.Generator().manual_seed(seed)
                self.text_projection = text_projection(int(self.config["text_dim"]), self.dim, generator)
        if not untrained:
            tensors = read_weights(self.path)
            self.tower.load_state_dict(unprefixed("image.", tensors))
            if self.text_projection is not None:
                self.text_projection.load_state_dict(unprefixed("text_projection.", tensors))
        self.tower.to(self.device).eval()
        self._text_encoder = text_encoder
        logger.info(
            "loaded %s checkpoint %s (%s, dim %d%s)",
            self.kind,
            self.path,
            self.config["backbone"],
            self.dim,
            ", untrained" if untrained else "",
        )

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (n, size, size) letterboxed grey arrays -> float32 (n, dim), L2-normalised."""
        import torch

        from engine.encoders.images import normalise_pixels

        outputs = []
        with torch.inference_mode():
            for start in range(0, len(pixels), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(pixels[start : start + self.batch_size]))
                outputs.append(self._embed(normalise_pixels(batch, self.preprocess).to(self.device)))
        if not outputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalise(np.concatenate(outputs))

    def _embed(self, tensor: torch.Tensor) -> np.ndarray:
        features, projected, _ = self.tower(tensor)
        chosen = projected if self.config.get("output") == "projection" else features
        return chosen.float().cpu().numpy()

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> float32 (n, dim), L2-normalised (grey, letterboxed to the checkpoint's size)."""
        return self.encode_pixels(letterbox_batch(list(images), self.preprocess.size))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 (n, dim), L2-normalised (clip checkpoints only): locked text tower + projection."""
        import torch

        if self.text_projection is None:
            raise NotImplementedError(
                f"{self.name} is an image-only ({self.kind}) encoder; it cannot embed text"
            )
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        text_vectors = self.text_encoder.encode_texts(list(texts))
        with torch.inference_mode():
            projected = self.text_projection(torch.from_numpy(text_vectors)).numpy()
        return l2_normalise(projected)

    @property
    def text_encoder(self) -> Encoder:
        """The locked text tower (built on first use)."""
        if self._text_encoder is None:
            from engine.encoders.registry import create

            self._text_encoder = create(self.config.get("text_encoder", "minilm"))
        return self._text_encoder

    def card(self) -> dict[str, Any]:
        """The checkpoint's model card ({} when absent)."""
        from engine.training.checkpoint import read_card

        return read_card(self.path)
