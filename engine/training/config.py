"""Training configurations: seeded dataclasses saved verbatim into each checkpoint's model card."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.encoders.images import ImagePreprocess


@dataclass(frozen=True)
class AugmentConfig:
    """Radiology-safe augmentations, applied on grey tensors in batch (see `engine.training.augment`).

    crop_scale: area fraction range of random resized crops (multi-crop "global" views).
    max_rotation: degrees, uniform in [-max, max] (patients are not always straight).
    flip_regions: body parts whose images may be mirrored left-right (roughly symmetric anatomy);
        chest and abdomen are never mirrored (situs), nor images of unknown region unless "*" is listed.
    window_low / window_high: intensity window bounds are drawn from [0, window_low] and
        [window_high, 1] (a random window level/width, as a radiologist re-windows a scan).
    gamma: log-uniform gamma range (+/- this value in log space).
    noise: std of additive Gaussian noise in [0, 1] intensity units.
    """

    crop_scale: tuple[float, float] = (0.35, 1.0)
    max_rotation: float = 10.0
    flip_regions: tuple[str, ...] = ("head", "spine")
    window_low: float = 0.2
    window_high: float = 0.8
    gamma: float = 0.4
    noise: float = 0.02


@dataclass(frozen=True)
class SplitConfig:
    """The held-out validation split (see `engine.training.data.validation_split`).

    medpix_fraction: share of MedPix cases (all MedPix images here are official dev cases) held out,
        chosen by a seeded hash of the case id.
    salt: names the split; changing it changes which cases are held out.
    near_duplicate_correlation: training images whose 24 px grey thumbnail correlates at least this much with
        a held-out image's are not trained on (neighbouring slices of one scan: SLAKE's official split puts
        slices of one volume on both sides); None keeps them.
    """

    medpix_fraction: float = 0.5
    salt: str = "medsearch-val-v1"
    near_duplicate_correlation: float | None = 0.95


# The clip tower's crops keep at least 60% of the image (its positive is a text about the whole image; the
# ssl tower keeps SimCLR-style (0.35, 1.0)). medsearch-val-v1 at 910 steps: modality P@10 0.870 / 0.864 (seeds
# 0 / 1) vs 0.849, caption R@10 0.413 / 0.439 vs 0.367; same-region P@10 0.769 / 0.741 vs 0.740 (seed noise).
CLIP_CROP_SCALE: tuple[float, float] = (0.6, 1.0)


@dataclass(frozen=True)
class ClipTrainConfig:
    """LiT/ConVIRT-style image tower trained against the locked MiniLM text tower plus a projection.

    backbone: any timm model name, built with `in_chans=1` and random weights (no hub).
    dim: shared embedding dimension of the image and projected text vectors.
    epochs / batch_size: passes over the training images / images per step (each with one of its texts).
    max_seconds: wall-clock cap from the call (data preparation included); the loop stops early (and the
        card says so) when it is reached. Saving and the held-out evaluation come after it.
    aux_weight: weight of the metadata heads (modality, body part, plane) as auxiliary targets.
    head_input: which output the metadata heads read: "projection" (the vectors retrieval uses) or
        "features" (the backbone's pooled features).
    ema_decay: 0 saves the last weights; else the saved image tower is an exponential moving average of
        the weights over the steps (decay per step, e.g. 0.995).
    texts_per_image: at most this many texts per image are kept (the first is the caption-like one).
    threads: torch threads; None picks 2, or 1 when the machine is already busy (see `loop.choose_threads`).
    """

    name: str = "clip"
    seed: int = 0
    backbone: str = "mobilenetv3_small_100"
    image: ImagePreprocess = field(default_factory=lambda: ImagePreprocess(size=96))
    dim: int = 256
    epochs: int = 70
    batch_size: int = 64
    lr: float = 2e-3
    text_lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 50
    temperature: float = 0.07
    aux_weight: float = 2.0
    head_input: str = "projection"
    ema_decay: float = 0.0
    texts_per_image: int = 8
    max_seconds: float | None = 500.0
    threads: int | None = None
    text_encoder: str = "minilm"
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(crop_scale=CLIP_CROP_SCALE))
    split: SplitConfig = field(default_factory=SplitConfig)
    log_every: int = 10

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for the model card)."""
        return asdict(self)


@dataclass(frozen=True)
class SslTrainConfig:
    """SimCLR-style self-supervised tower with multi-crop views (2 global + `local_crops` small ones).

    The encoder's vectors are the backbone features (before the projection head), as in SimCLR.
    aux_weight: metadata heads (modality, body part, plane) where labels exist; 0 gives pure SSL.
    threads: torch threads; None picks 2, or 1 when the machine is already busy (see `loop.choose_threads`).
    init_from: a checkpoint folder (e.g. `<home>/models/clip`) whose image backbone starts the tower (same
        `backbone` name required; projection and heads start fresh); None starts from random weights.
    """

    name: str = "ssl"
    seed: int = 0
    backbone: str = "mobilenetv3_small_100"
    image: ImagePreprocess = field(default_factory=lambda: ImagePreprocess(size=96))
    projection_dim: int = 128
    epochs: int = 35
    batch_size: int = 48
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    temperature: float = 0.2
    local_crops: int = 2
    local_size: int = 48
    local_scale: tuple[float, float] = (0.1, 0.35)
    aux_weight: float = 2.0
    max_seconds: float | None = 500.0
    threads: int | None = None
    init_from: str | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    log_every: int = 10

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for the model card)."""
        return asdict(self)
