"""Model cards: what a checkpoint was trained on, how long, its loss curve, and its held-out figures."""

from __future__ import annotations

import logging
import os
import platform
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.datasets.record import Record
from engine.training.checkpoint import CARD_FILE, read_card, write_json
from engine.training.data import Split, image_records
from engine.training.loop import TrainingLog

logger = logging.getLogger(__name__)


def build_card(
    kind: str,
    config: Mapping[str, Any],
    split: Split,
    trained_on: Sequence[Record],
    log: TrainingLog,
    epochs: float,
    extra: Mapping[str, Any] | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """The `model_card.json` payload (validation metrics are added later by `add_validation`).

    Args:
        kind: "clip" or "ssl".
        config: the training config as a dict.
        split: the split used (its rule and held-out ids are recorded).
        trained_on: image records the model actually saw.
        log: the run's loss curve, steps and timing.
        epochs: epochs completed (fractional when the time budget stopped the run).
        extra: kind-specific facts (pair counts, text kinds, ...).
        threads: torch threads the run used.
    """
    import torch

    held_out = sorted(r.id for r in image_records(split.validation))
    return {
        "kind": kind,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {
            "images_per_source": dict(Counter(r.source for r in trained_on)),
            "images": len(trained_on),
            **(extra or {}),
        },
        "validation_split": {"rule": split.rule, "held_out_images": len(held_out), "held_out_ids": held_out},
        "training": {
            "steps": log.steps,
            "epochs": round(epochs, 2),
            "wall_seconds": round(log.elapsed(), 1),
            "stopped_by_time_budget": log.stopped_early,
            "torch_threads": threads or torch.get_num_threads(),
            "cpu_cores": os.cpu_count(),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        },
        "loss_curve": log.curve,
        "validation_metrics": None,
        "config": dict(config),
    }


def add_validation(
    out_dir: Path,
    validation: Sequence[Record],
    text_encoder: Any = None,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Measure the saved checkpoint on the held-out images (with random and raw-pixel baselines in the
    same run) and write the figures into its model card.

    Returns:
        The metrics dict (see `evaluate_retrieval`), or None when there is no held-out image.
    """
    from engine.encoders.trained import TrainedEncoder
    from engine.evaluation.retrieval import evaluate_retrieval

    images = image_records(validation)
    if not images:
        logger.warning("no held-out images: the model card of %s has no validation metrics", out_dir)
        return None
    encoder = TrainedEncoder(str(out_dir), text_encoder=text_encoder)
    metrics = evaluate_retrieval(images, {"trained": encoder}, progress=progress)
    card = read_card(out_dir)
    card["validation_metrics"] = metrics
    write_json(Path(out_dir) / CARD_FILE, card)
    return metrics
