"""The trainable modules: a timm image tower with projection and metadata heads, and the text projection.

Both are rebuilt from a checkpoint's `config.json` by `engine.encoders.trained`, so every argument here
is a plain JSON value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import EncoderUnavailableError

logger = logging.getLogger(__name__)


class CosineHead(nn.Module):
    """Cosine classifier: logits = scale * cos(x, class prototype), so classes cluster on the sphere
    that retrieval searches (a linear head would only make them linearly separable)."""

    def __init__(self, in_features: int, classes: int, scale: float = 16.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, in_features) * in_features**-0.5)
        self.scale = scale

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """float32 (n, in_features) -> logits (n, classes)."""
        return self.scale * F.normalize(inputs, dim=1) @ F.normalize(self.weight, dim=1).t()


class ImageTower(nn.Module):
    """Grey image -> backbone features -> projection; plus one cosine head per metadata field, on the
    output that retrieval uses (`head_input`: "projection" or "features").

    Args:
        backbone: a timm model name, built with random weights, `in_chans` channels and no classifier.
        in_chans: input channels (1 for grey).
        projection_dim: output size of the projection.
        projection_hidden: 0 for a linear projection (CLIP), else the hidden width of a 2-layer MLP (SimCLR).
        metadata_classes: field -> number of classes (e.g. {"body_part": 9}); a head per field.
        image_size: input side used to measure the backbone's feature size.
        head_input: which output the metadata heads read ("projection" or "features").
    """

    def __init__(
        self,
        backbone: str,
        in_chans: int,
        projection_dim: int,
        projection_hidden: int = 0,
        metadata_classes: Mapping[str, int] | None = None,
        image_size: int = 128,
        head_input: str = "projection",
    ) -> None:
        super().__init__()
        self.head_input = head_input
        try:
            import timm
        except ModuleNotFoundError as e:
            raise EncoderUnavailableError(
                "trained image towers need timm: pip install 'medsearch[clip]'"
            ) from e
        try:
            self.backbone = timm.create_model(backbone, pretrained=False, in_chans=in_chans, num_classes=0)
        except RuntimeError as e:
            raise EncoderUnavailableError(f"unknown timm backbone {backbone!r}: {e}") from e
        self.feature_dim = _feature_dim(self.backbone, in_chans, image_size)
        if projection_hidden:
            self.projection: nn.Module = nn.Sequential(
                nn.Linear(self.feature_dim, projection_hidden),
                nn.BatchNorm1d(projection_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(projection_hidden, projection_dim),
            )
        else:
            self.projection = nn.Linear(self.feature_dim, projection_dim)
        head_dim = projection_dim if head_input == "projection" else self.feature_dim
        self.heads = nn.ModuleDict(
            {name: CosineHead(head_dim, count) for name, count in (metadata_classes or {}).items()}
        )
        self.backbone.to(memory_format=torch.channels_last)  # ~1.5x faster convolutions on CPU

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """float32 (n, C, H, W) -> (features (n, feature_dim), projection (n, dim), {field: logits (n, k)})."""
        features = self.backbone(pixels.contiguous(memory_format=torch.channels_last))
        projected = self.projection(features)
        head_input = projected if self.head_input == "projection" else features
        return features, projected, {name: head(head_input) for name, head in self.heads.items()}


def _feature_dim(backbone: nn.Module, in_chans: int, image_size: int) -> int:
    """Size of the backbone's pooled output, measured on one dummy batch."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        dim = int(backbone(torch.zeros(2, in_chans, image_size, image_size)).shape[-1])
    backbone.train(was_training)
    return dim


def text_projection(text_dim: int, dim: int, generator: torch.Generator) -> nn.Linear:
    """Linear map from the locked text tower's space to the shared space, orthogonally initialised
    (so at step 0 it keeps MiniLM's geometry)."""
    layer = nn.Linear(text_dim, dim, bias=False)
    with torch.no_grad():
        random = torch.randn(max(text_dim, dim), min(text_dim, dim), generator=generator)
        q, _ = torch.linalg.qr(random)
        layer.weight.copy_(q if dim >= text_dim else q.t())
    return layer


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def tower_from_config(model_config: Mapping[str, object]) -> ImageTower:
    """Rebuild the image tower described by a checkpoint's `config.json` (weights not loaded)."""
    classes = model_config.get("metadata_classes") or {}
    preprocessing = model_config.get("preprocessing") or {}
    return ImageTower(
        backbone=str(model_config["backbone"]),
        in_chans=int(preprocessing.get("channels", 1)),  # type: ignore[union-attr]
        projection_dim=int(model_config["projection_dim"]),  # type: ignore[arg-type]
        projection_hidden=int(model_config.get("projection_hidden") or 0),  # type: ignore[arg-type]
        metadata_classes={name: len(values) for name, values in classes.items()},  # type: ignore[union-attr]
        image_size=int(preprocessing.get("size", 128)),  # type: ignore[union-attr]
        head_input=str(model_config.get("head_input", "projection")),
    )
