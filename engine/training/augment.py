"""Batch augmentations for grey radiology tensors, vectorised with one affine warp per batch.

All randomness comes from the `torch.Generator` passed in, so a seed fixes every view.
Views: random resized crop + small rotation (+ a left-right mirror only where `flip` allows),
then a random intensity window and gamma (re-windowing), then light Gaussian noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from engine.training.config import AugmentConfig


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def random_crops(
    pixels: torch.Tensor,
    out_size: int,
    scale: tuple[float, float],
    config: AugmentConfig,
    flip: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Random resized crops with rotation and optional mirroring, in one `grid_sample`.

    Args:
        pixels: float32 (n, 1, H, W) in [0, 1].
        out_size: output side in pixels.
        scale: range of the crop's area as a fraction of the image.
        config: rotation limit.
        flip: bool (n,), which images may be mirrored (each then is with probability 0.5).
        generator: the seeded source of randomness.

    Returns:
        float32 (n, 1, out_size, out_size) in [0, 1].
    """
    n = pixels.shape[0]
    area = _uniform(n, scale[0], scale[1], generator)
    log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), generator)
    ratio = torch.exp(log_ratio)
    half_w = torch.sqrt(area * ratio).clamp(max=1.0)
    half_h = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = _uniform(n, -1.0, 1.0, generator) * (1 - half_w)
    centre_y = _uniform(n, -1.0, 1.0, generator) * (1 - half_h)
    angle = _uniform(n, -config.max_rotation, config.max_rotation, generator) * math.pi / 180
    mirrored = (torch.rand(n, generator=generator) < 0.5) & flip
    sign = torch.where(mirrored, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * half_w * sign
    theta[:, 0, 1] = -sin * half_h
    theta[:, 1, 0] = sin * half_w * sign
    theta[:, 1, 1] = cos * half_h
    theta[:, 0, 2] = centre_x
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, [n, 1, out_size, out_size], align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_window(pixels: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random intensity window, gamma and noise: float32 (n, 1, H, W) in [0, 1] -> same shape in [0, 1]."""
    n = pixels.shape[0]
    low = _uniform(n, 0.0, config.window_low, generator).view(n, 1, 1, 1)
    high = _uniform(n, config.window_high, 1.0, generator).view(n, 1, 1, 1)
    gamma = torch.exp(_uniform(n, -config.gamma, config.gamma, generator)).view(n, 1, 1, 1)
    windowed = ((pixels - low) / (high - low)).clamp(0.0, 1.0) ** gamma
    noise = torch.randn(pixels.shape, generator=generator) * config.noise
    return (windowed + noise).clamp(0.0, 1.0)


def augment_views(
    pixels: torch.Tensor,
    out_size: int,
    scale: tuple[float, float],
    config: AugmentConfig,
    flip: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """One augmented view per image: crop/rotate/mirror, then re-window.

    Args:
        pixels: uint8 (n, H, W) or float (n, 1, H, W) in [0, 1].
        out_size, scale, config, flip, generator: as in `random_crops`.

    Returns:
        float32 (n, 1, out_size, out_size) in [0, 1].
    """
    if pixels.dtype == torch.uint8:
        pixels = pixels.float().div(255.0)
    if pixels.dim() == 3:
        pixels = pixels.unsqueeze(1)
    return random_window(random_crops(pixels, out_size, scale, config, flip, generator), config, generator)


def flip_mask(body_parts: list[str | None], config: AugmentConfig) -> torch.Tensor:
    """bool (n,): True where the image's region is listed in `config.flip_regions` ("*" allows all)."""
    allowed = set(config.flip_regions)
    return torch.tensor([("*" in allowed) or (part in allowed) for part in body_parts], dtype=torch.bool)
