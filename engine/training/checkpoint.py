"""Checkpoint folders: `config.json` (what to rebuild), `model.safetensors`, `model_card.json` (how it was made).

Layout of `<home>/models/<name>/`, read back by `encoders.create("trained:<folder>")`:

- config.json: {"format": "medsearch-trained", "version", "family": "trained", "kind": "clip"|"ssl",
  "space", "dim", "output": "projection"|"features", "backbone", "projection_dim", "projection_hidden",
  "metadata_classes": {field: [values]}, "preprocessing": {...}, "text_encoder", "text_dim", "seed"}
- model.safetensors: "image.*" (the tower), "text_projection.*" and "logit_scale" (clip only).
- model_card.json: data counts per source, the held-out rule and ids, steps, epochs, wall time,
  loss curve, validation metrics, the full training config.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from engine.errors import EncoderUnavailableError

logger = logging.getLogger(__name__)

FORMAT = "medsearch-trained"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def save_checkpoint(
    out_dir: Path, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], card: Mapping[str, Any]
) -> Path:
    """Write a checkpoint folder; an existing folder is replaced only once the new one is complete.

    Args:
        out_dir: the checkpoint folder (e.g. `<home>/models/clip`).
        config: the `config.json` payload.
        tensors: name -> tensor, saved with safetensors.
        card: the `model_card.json` payload.

    Returns:
        `out_dir`.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    recover_interrupted_save(out_dir)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(staging / WEIGHTS_FILE))
    write_json(staging / CONFIG_FILE, {"format": FORMAT, "version": VERSION, **config})
    write_json(staging / CARD_FILE, card)
    _fsync_folder(staging)  # on disk before the renames make it the checkpoint
    if out_dir.exists():
        previous = out_dir.with_name(out_dir.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(out_dir, previous)
        os.replace(staging, out_dir)
        shutil.rmtree(previous, ignore_errors=True)
    else:
        os.replace(staging, out_dir)
    logger.info("saved checkpoint to %s", out_dir)
    return out_dir


def recover_interrupted_save(out_dir: Path) -> bool:
    """Put back `<out_dir>.previous` when a save stopped between its two renames (no `out_dir`, only the old
    copy); True when it did."""
    previous = Path(out_dir).with_name(Path(out_dir).name + ".previous")
    if Path(out_dir).exists() or not (previous / CONFIG_FILE).is_file():
        return False
    try:
        os.replace(previous, out_dir)
    except OSError:  # another process restored it first
        return Path(out_dir).exists()
    logger.warning("restored %s from %s (a save was interrupted)", out_dir, previous)
    return True


def _fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_config(folder: Path) -> dict[str, Any]:
    """The `config.json` of a checkpoint folder.

    Raises:
        EncoderUnavailableError: the folder or its config is missing, unreadable or not ours.
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file() and not recover_interrupted_save(Path(folder)):
        raise EncoderUnavailableError(f"no trained checkpoint at {folder}: missing {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise EncoderUnavailableError(f"unreadable checkpoint config {path}: {e}") from e
    if config.get("format") != FORMAT or config.get("kind") not in ("clip", "ssl"):
        raise EncoderUnavailableError(
            f"{path} is not a medsearch checkpoint (format {config.get('format')!r})"
        )
    return config


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint folder (raises EncoderUnavailableError naming the file when missing)."""
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise EncoderUnavailableError(f"checkpoint {folder} has no weights file {WEIGHTS_FILE}")
    return load_file(str(path))


def read_card(folder: Path) -> dict[str, Any]:
    """The `model_card.json` of a checkpoint folder ({} when absent)."""
    path = Path(folder) / CARD_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Prefix every key of a state dict ("image." + key)."""
    return {f"{prefix}{key}": value for key, value in state.items()}


def unprefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of `tensors` whose key starts with `prefix`, with the prefix removed."""
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
