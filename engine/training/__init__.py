"""Training of this project's image encoders: `train_clip` (LiT/ConVIRT) and `train_ssl` (SimCLR multi-crop).

Nothing heavy is imported here: torch and timm load when a trainer is first used.
"""

from __future__ import annotations

from typing import Any

from engine.training.config import AugmentConfig, ClipTrainConfig, SplitConfig, SslTrainConfig
from engine.training.data import Split, clip_pairs, load_shared_records, validation_split

__all__ = [
    "AugmentConfig",
    "ClipTrainConfig",
    "Split",
    "SplitConfig",
    "SslTrainConfig",
    "clip_pairs",
    "load_shared_records",
    "train_clip",
    "train_ssl",
    "validation_split",
]

_LAZY = {"train_clip": "engine.training.clip", "train_ssl": "engine.training.ssl"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine.training' has no attribute {name!r}")
