"""`medsearch train ssl`: SimCLR-style self-supervised image tower with multi-crop views.

Each step shows every image as 2 global crops and `local_crops` small crops, each re-windowed
(random intensity window and gamma) and mirrored only where the anatomy allows; NT-Xent pulls all views
of an image toward its global views. Where an image has metadata (modality, body part, plane), linear
heads on the features add a weak supervised signal (`aux_weight`; 0 gives pure self-supervision).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.datasets.record import Record
from engine.encoders.images import normalise_pixels
from engine.training.augment import augment_views, flip_mask
from engine.training.card import add_validation, build_card
from engine.training.checkpoint import prefixed, read_config, read_weights, save_checkpoint, unprefixed
from engine.training.config import SslTrainConfig
from engine.training.data import (
    image_records,
    load_training_bank,
    metadata_labels,
    metadata_vocab,
    validation_split,
)
from engine.training.errors import TrainingDataError
from engine.training.loop import (
    TrainingLog,
    choose_threads,
    make_optimizer,
    run_epochs,
    seed_everything,
    torch_threads,
)
from engine.training.losses import metadata_loss, multi_view_loss
from engine.training.models import ImageTower

logger = logging.getLogger(__name__)

PROJECTION_HIDDEN = 512


def _views(
    bank: torch.Tensor, flip: torch.Tensor, config: SslTrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(global views float32 (2n, 1, S, S), local views (local_crops * n, 1, s, s)), normalised."""
    size, augment = config.image.size, config.augment
    global_views = [augment_views(bank, size, augment.crop_scale, augment, flip, generator) for _ in range(2)]
    local_views = [
        augment_views(bank, config.local_size, config.local_scale, augment, flip, generator)
        for _ in range(config.local_crops)
    ]
    globals_ = normalise_pixels(torch.cat(global_views), config.image)
    locals_ = normalise_pixels(torch.cat(local_views), config.image) if local_views else globals_[:0]
    return globals_, locals_


def _step(
    tower: ImageTower,
    bank: torch.Tensor,
    labels: dict[str, torch.Tensor],
    flip: torch.Tensor,
    config: SslTrainConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Multi-crop NT-Xent (+ metadata heads on the global views) for one batch."""
    n = bank.shape[0]
    global_views, local_views = _views(bank, flip, config, generator)
    _, global_projected, logits = tower(global_views)
    projected = [global_projected]
    if len(local_views):
        projected.append(tower(local_views)[1])
    views = list(F.normalize(torch.cat(projected), dim=1).split(n))
    contrastive = multi_view_loss(views, config.temperature, n_global=2)
    doubled = {name: values.repeat(2) for name, values in labels.items()}
    metadata = metadata_loss(logits, doubled)
    loss = contrastive + config.aux_weight * metadata
    return loss, {"loss": loss.item(), "contrastive": contrastive.item(), "metadata": metadata.item()}


def train_ssl(
    records: Sequence[Record], out_dir: Path, config: SslTrainConfig | None = None, progress: bool = True
) -> Path:
    """Train an ssl-space image tower on every readable image of `records` (held-out ones excluded).

    Args:
        records: image records of any source (a user's folder too); the validation split is removed
            here and used only to measure the saved model.
        out_dir: checkpoint folder, e.g. `<home>/models/ssl` (replaced when it exists).
        config: training settings (defaults: about 9 minutes on 2 CPU cores).
        progress: tqdm bars.

    Returns:
        `out_dir`, holding config.json, model.safetensors and model_card.json.

    Raises:
        TrainingDataError: fewer than 2 readable training images.
    """
    config = config or SslTrainConfig()
    log = TrainingLog(config.max_seconds, config.log_every)  # the budget covers image decoding too
    split = validation_split(records, config.split)
    threads = choose_threads(config.threads)
    logger.info("training with %d torch thread(s)", threads)
    with torch_threads(threads):
        generator = seed_everything(config.seed)
        bank, trained_on, dropped = load_training_bank(
            image_records(split.train), split.validation, config.image.size, config.split, progress
        )
        if len(trained_on) < 2:
            raise TrainingDataError(
                f"self-supervised training needs at least 2 readable images, got {len(trained_on)}"
            )
        vocab = metadata_vocab(trained_on)
        labels = {k: torch.from_numpy(v) for k, v in metadata_labels(trained_on, vocab).items()}
        flip = flip_mask([r.body_part for r in trained_on], config.augment)
        tower, epochs = _train(torch.from_numpy(bank), labels, flip, vocab, config, generator, log, progress)
    model_config = _model_config(config, vocab, tower)
    extra = {"metadata_vocab": vocab, "near_duplicates_of_held_out_dropped": dropped}
    card = build_card("ssl", config.as_dict(), split, trained_on, log, epochs, extra, threads)
    save_checkpoint(Path(out_dir), model_config, prefixed("image.", tower.state_dict()), card)
    with torch_threads(threads):
        add_validation(Path(out_dir), split.validation, progress=progress)
    return Path(out_dir)


def _train(
    bank: torch.Tensor,
    labels: dict[str, torch.Tensor],
    flip: torch.Tensor,
    vocab: dict[str, list[str]],
    config: SslTrainConfig,
    generator: torch.Generator,
    log: TrainingLog,
    progress: bool,
) -> tuple[ImageTower, float]:
    """The optimisation loop; returns the tower and the epochs completed."""
    classes = {name: len(values) for name, values in vocab.items()}
    tower = ImageTower(
        config.backbone,
        config.image.channels,
        config.projection_dim,
        PROJECTION_HIDDEN,
        classes,
        config.image.size,
        head_input="features",
    )
    if config.init_from:
        load_backbone(tower, Path(config.init_from), config.backbone)
    optimizer = make_optimizer([{"params": list(tower.parameters()), "lr": config.lr}], config.weight_decay)
    tower.train()

    def step(rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        batch_labels = {name: values[rows] for name, values in labels.items()}
        return _step(tower, bank[rows], batch_labels, flip[rows], config, generator)

    epochs = run_epochs(step, optimizer, len(bank), config, generator, log, "train ssl", progress)
    tower.eval()
    return tower, epochs


def load_backbone(tower: ImageTower, folder: Path, backbone: str) -> None:
    """Start `tower`'s backbone from the image backbone of the checkpoint in `folder` (projection and heads keep
    their fresh weights).

    Raises:
        TrainingDataError: the checkpoint's backbone is another architecture, or its weights do not fit.
    """
    saved = read_config(folder)
    if saved.get("backbone") != backbone:
        raise TrainingDataError(
            f"{folder}: backbone {saved.get('backbone')!r} cannot start a {backbone!r} tower (init_from)"
        )
    weights = unprefixed("backbone.", unprefixed("image.", read_weights(folder)))
    try:
        tower.backbone.load_state_dict(weights)
    except RuntimeError as e:
        raise TrainingDataError(f"{folder}: its backbone weights do not fit this tower: {e}") from e
    logger.info("ssl tower starts from the backbone of %s", folder)


def _model_config(config: SslTrainConfig, vocab: dict[str, list[str]], tower: ImageTower) -> dict[str, Any]:
    return {
        "family": "trained",
        "kind": "ssl",
        "space": "ssl",
        "dim": tower.feature_dim,
        "output": "features",
        "backbone": config.backbone,
        "feature_dim": tower.feature_dim,
        "projection_dim": config.projection_dim,
        "projection_hidden": PROJECTION_HIDDEN,
        "head_input": "features",
        "metadata_classes": vocab,
        "preprocessing": config.image.as_dict(),
        "seed": config.seed,
    }
