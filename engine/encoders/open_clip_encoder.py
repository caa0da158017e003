"""`open_clip:...`: any open_clip model, embedding images and texts into one "clip" space.

Arguments (after `open_clip:`), parsed by open_clip itself as in `open_clip.create_model`:

- a built-in model name, with `pretrained=` a tag ("laion2b_s34b_b79k", downloaded) or a weights file:
  `create("open_clip:ViT-B-32", pretrained="/models/vit-b-32.safetensors")`;
- `hf-hub:org/repo` (e.g. `hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`);
- `local-dir:/path` or a plain folder path holding `open_clip_config.json` and the weights
  (`open_clip_model.safetensors` / `open_clip_pytorch_model.bin`), as `open_clip.push_to_hf_hub.save_for_hf`
  writes them;
- a custom config: `create("open_clip:my-model", config_path="my-model.json", pretrained=WEIGHTS)`
  registers the JSON (named after its stem) with `open_clip.add_model_config` first.
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

_OFFLINE_HINT = (
    "no network or no published weights here? give a local copy: open_clip:local-dir:/path "
    "(open_clip_config.json + weights) or open_clip:MODEL with pretrained=/path/to/weights"
)


def resolve_model_name(argument: str) -> str:
    """open_clip's model identifier for an encoder argument: an existing folder becomes `local-dir:<folder>`."""
    if argument.startswith(("hf-hub:", "local-dir:")):
        return argument
    if Path(argument).expanduser().is_dir():
        return f"local-dir:{Path(argument).expanduser().resolve()}"
    return argument


class OpenClipEncoder:
    """open_clip model behind the Encoder protocol: images and texts -> float32 (n, embed_dim), L2-normalised.

    Args:
        model: see the module docstring.
        pretrained: tag or weights file, for built-in / registered model names only.
        config_path: a custom open_clip model config JSON to register before building.
        device: torch device.
        batch_size: items per forward pass.
    """

    space = "clip"
    modalities = frozenset({"image", "text"})

    def __init__(
        self,
        model: str,
        pretrained: str | None = None,
        config_path: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        try:
            import open_clip
            import torch
        except ModuleNotFoundError as e:
            raise EncoderUnavailableError(
                f"open_clip encoders need {e.name!r}: pip install 'medsearch[clip]'"
            ) from e
        started = time.perf_counter()
        if config_path:
            open_clip.add_model_config(str(config_path))
        self.model_name = resolve_model_name(model)
        try:
            loaded, _, preprocess = open_clip.create_model_and_transforms(
                self.model_name, pretrained=pretrained, device=device
            )
            self.tokenizer = open_clip.get_tokenizer(self.model_name)
        except (RuntimeError, OSError, ValueError) as e:
            raise EncoderUnavailableError(
                f"cannot load open_clip model {model!r}: {e}; {_OFFLINE_HINT}"
            ) from e
        if pretrained is None and not self.model_name.startswith(("hf-hub:", "local-dir:")):
            logger.warning("open_clip:%s has no pretrained weights: its vectors are random", model)
        self.model = loaded.eval()
        self.preprocess = preprocess
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.dim = self._measure_dim()
        self.name = f"open_clip:{model}"
        logger.info(
            "loaded open_clip %s (dim %d) in %.1fs", self.model_name, self.dim, time.perf_counter() - started
        )

    def _measure_dim(self) -> int:
        output_dim = getattr(self.model.visual, "output_dim", None)
        if isinstance(output_dim, int):
            return output_dim
        return int(self.encode_texts(["x"]).shape[1])

    def _run(self, batches: Sequence[Any], encode: Any) -> np.ndarray:
        import torch

        outputs = []
        with torch.inference_mode():
            for batch in batches:
                outputs.append(encode(batch.to(self.device), normalize=True).float().cpu().numpy())
        return l2_normalise(np.concatenate(outputs))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> float32 (n, dim), L2-normalised (RGB, the model's own preprocessing)."""
        import torch

        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        tensors = [self.preprocess(image.convert("RGB")) for image in images]
        batches = [
            torch.stack(tensors[i : i + self.batch_size]) for i in range(0, len(tensors), self.batch_size)
        ]
        return self._run(batches, self.model.encode_image)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 (n, dim), L2-normalised (the model's tokenizer, truncated to its context)."""
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        batches = [
            self.tokenizer(list(texts[i : i + self.batch_size]))
            for i in range(0, len(texts), self.batch_size)
        ]
        return self._run(batches, self.model.encode_text)
