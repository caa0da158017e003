"""`medsearch train clip`: LiT/ConVIRT-style training of an image tower against the locked MiniLM text tower.

The text tower never changes (its vectors are computed once); a linear projection maps them into the
shared space, where an image tower (timm backbone, grey 1-channel input) learns with a symmetric InfoNCE
that treats identical texts as shared positives, plus metadata heads (modality, body part, plane).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.datasets.record import Record
from engine.encoders.base import Encoder
from engine.encoders.images import normalise_pixels
from engine.training.augment import augment_views, flip_mask
from engine.training.card import add_validation, build_card
from engine.training.checkpoint import prefixed, save_checkpoint
from engine.training.config import ClipTrainConfig
from engine.training.data import (
    image_records,
    load_training_bank,
    metadata_labels,
    metadata_vocab,
    record_texts,
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
from engine.training.losses import image_text_loss, metadata_loss
from engine.training.models import ImageTower, text_projection

logger = logging.getLogger(__name__)
_SIDE = re.compile(r"\b(left|right|lt|rt)\b", re.IGNORECASE)

PRIMARY_TEXT_PROBABILITY = 0.5  # how often a step shows an image with its caption-like text


@dataclass
class ClipData:
    """Training tensors: images (uint8 bank), texts (locked vectors), which texts describe which image."""

    records: list[Record]
    bank: torch.Tensor  # uint8 (n, size, size)
    texts: list[str]
    text_vectors: torch.Tensor  # float32 (n_texts, text_dim)
    image_texts: list[list[int]]  # per image, indices into texts (first = caption-like)
    labels: dict[str, torch.Tensor]  # field -> int64 (n,), -1 unknown
    vocab: dict[str, list[str]]
    flip: torch.Tensor  # bool (n,)
    text_kinds: dict[str, int]
    near_duplicates_dropped: int = 0


def prepare_clip_data(
    records: Sequence[Record],
    config: ClipTrainConfig,
    text_encoder: Encoder,
    progress: bool = True,
    held_out: Sequence[Record] = (),
) -> ClipData:
    """Decode training images (minus near-duplicates of `held_out` ones), build their texts and embed every
    distinct text once with the locked tower.

    Raises:
        TrainingDataError: no record has both a readable image and a text.
    """
    candidates = [r for r in image_records(records) if record_texts(r)]
    bank, kept_records, dropped = load_training_bank(
        candidates, held_out, config.image.size, config.split, progress
    )
    if not kept_records:
        raise TrainingDataError("no image-text pairs to train on: no record has a readable image and a text")
    texts: list[str] = []
    index: dict[str, int] = {}
    image_texts: list[list[int]] = []
    kinds: dict[str, int] = {}
    for record in kept_records:
        ids = []
        for kind, text in record_texts(record)[: config.texts_per_image]:
            ids.append(index.setdefault(text, len(texts)))
            if ids[-1] == len(texts):
                texts.append(text)
            kinds[kind] = kinds.get(kind, 0) + 1
        image_texts.append(ids)
    logger.info("embedding %d distinct texts with the locked text tower", len(texts))
    text_vectors = torch.from_numpy(np.asarray(text_encoder.encode_texts(texts), dtype=np.float32))
    vocab = metadata_vocab(kept_records)
    labels = {k: torch.from_numpy(v) for k, v in metadata_labels(kept_records, vocab).items()}
    # a mirrored view must not be paired with a text that names a side ("left frontal lobe")
    sided = torch.tensor([any(_SIDE.search(texts[i]) for i in ids) for ids in image_texts], dtype=torch.bool)
    flip = flip_mask([r.body_part for r in kept_records], config.augment) & ~sided
    return ClipData(
        kept_records,
        torch.from_numpy(bank),
        texts,
        text_vectors,
        image_texts,
        labels,
        vocab,
        flip,
        kinds,
        dropped,
    )


def _pick_texts(data: ClipData, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One text index per image: its caption-like text with probability 0.5, else any of its texts."""
    choices = []
    draws = torch.rand(len(rows), generator=generator)
    picks = torch.rand(len(rows), generator=generator)
    for row, draw, pick in zip(rows.tolist(), draws.tolist(), picks.tolist(), strict=True):
        options = data.image_texts[row]
        choices.append(options[0] if draw < PRIMARY_TEXT_PROBABILITY else options[int(pick * len(options))])
    return torch.tensor(choices, dtype=torch.long)


def _step(
    data: ClipData,
    rows: torch.Tensor,
    modules: tuple[ImageTower, torch.nn.Linear, torch.nn.Parameter],
    config: ClipTrainConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch of images, each shown with one of its texts."""
    tower, projection, log_scale = modules
    text_ids = _pick_texts(data, rows, generator)
    views = augment_views(
        data.bank[rows],
        config.image.size,
        config.augment.crop_scale,
        config.augment,
        data.flip[rows],
        generator,
    )
    _, image_vectors, logits = tower(normalise_pixels(views, config.image))
    text_vectors = projection(data.text_vectors[text_ids])
    positives = text_ids[:, None] == text_ids[None, :]
    scale = log_scale.exp().clamp(max=100.0)
    contrastive = image_text_loss(
        torch.nn.functional.normalize(image_vectors, dim=1),
        torch.nn.functional.normalize(text_vectors, dim=1),
        positives,
        scale,
    )
    metadata = metadata_loss(logits, {name: labels[rows] for name, labels in data.labels.items()})
    loss = contrastive + config.aux_weight * metadata
    values = {"loss": loss.item(), "contrastive": contrastive.item(), "metadata": metadata.item()}
    return loss, values


def train_clip(
    records: Sequence[Record],
    out_dir: Path,
    config: ClipTrainConfig | None = None,
    progress: bool = True,
    text_encoder: Encoder | None = None,
) -> Path:
    """Train a clip-space image tower and save it as a `trained:` checkpoint with its model card.

    Args:
        records: image records (any sources); the held-out validation split is removed here and used
            only to measure the saved model.
        out_dir: checkpoint folder, e.g. `<home>/models/clip` (replaced when it exists).
        config: training settings (defaults: about 9 minutes on 2 CPU cores).
        progress: tqdm bars.
        text_encoder: the locked text tower (default `create(config.text_encoder)`).

    Returns:
        `out_dir`, holding config.json, model.safetensors and model_card.json.
    """
    from engine.encoders.registry import create

    config = config or ClipTrainConfig()
    log = TrainingLog(config.max_seconds, config.log_every)  # the budget covers data preparation too
    split = validation_split(records, config.split)
    text_encoder = text_encoder or create(config.text_encoder)
    threads = choose_threads(config.threads)
    logger.info("training with %d torch thread(s)", threads)
    with torch_threads(threads):
        generator = seed_everything(config.seed)
        data = prepare_clip_data(split.train, config, text_encoder, progress, held_out=split.validation)
        tower, projection, log_scale, epochs = _train(data, config, generator, log, progress)
    model_config = _model_config(config, data, tower)
    tensors = {
        **prefixed("image.", tower.state_dict()),
        **prefixed("text_projection.", projection.state_dict()),
    }
    tensors["logit_scale"] = log_scale.detach()
    extra = {
        "pairs": sum(len(t) for t in data.image_texts),
        "distinct_texts": len(data.texts),
        "texts_per_kind": data.text_kinds,
        "metadata_vocab": data.vocab,
        "near_duplicates_of_held_out_dropped": data.near_duplicates_dropped,
    }
    card = build_card("clip", config.as_dict(), split, data.records, log, epochs, extra, threads)
    save_checkpoint(Path(out_dir), model_config, tensors, card)
    with torch_threads(threads):
        add_validation(Path(out_dir), split.validation, text_encoder, progress)
    return Path(out_dir)


def _train(
    data: ClipData, config: ClipTrainConfig, generator: torch.Generator, log: TrainingLog, progress: bool
) -> tuple[ImageTower, torch.nn.Linear, torch.nn.Parameter, float]:
    """The optimisation loop; returns the modules and the epochs completed."""
    classes = {name: len(values) for name, values in data.vocab.items()}
    tower = ImageTower(
        config.backbone, config.image.channels, config.dim, 0, classes, config.image.size, config.head_input
    )
    projection = text_projection(data.text_vectors.shape[1], config.dim, generator)
    log_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / config.temperature))))
    optimizer = make_optimizer(
        [
            {"params": list(tower.parameters()), "lr": config.lr},
            {"params": [*projection.parameters(), log_scale], "lr": config.text_lr},
        ],
        config.weight_decay,
    )
    tower.train()

    def step(rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return _step(data, rows, (tower, projection, log_scale), config, generator)

    average = _weight_average(tower, config.ema_decay)
    epochs = run_epochs(
        step,
        optimizer,
        len(data.records),
        config,
        generator,
        log,
        "train clip",
        progress,
        after_step=(lambda: average.update_parameters(tower)) if average is not None else None,
    )
    if average is not None:
        tower = average.module
    tower.eval()
    return tower, projection, log_scale, epochs


def _weight_average(tower: ImageTower, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of the tower's weights and batch-norm statistics (None when decay is 0)."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(tower, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _model_config(config: ClipTrainConfig, data: ClipData, tower: ImageTower) -> dict[str, Any]:
    return {
        "family": "trained",
        "kind": "clip",
        "space": "clip",
        "dim": config.dim,
        "output": "projection",
        "backbone": config.backbone,
        "feature_dim": tower.feature_dim,
        "projection_dim": config.dim,
        "projection_hidden": 0,
        "head_input": config.head_input,
        "metadata_classes": data.vocab,
        "preprocessing": config.image.as_dict(),
        "text_encoder": config.text_encoder,
        "text_dim": int(data.text_vectors.shape[1]),
        "seed": config.seed,
    }
