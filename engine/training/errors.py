"""Errors raised by training (rooted in `engine.errors.EngineError`, so the CLI and API report them cleanly)."""

from __future__ import annotations

from engine.errors import EngineError


class TrainingDataError(EngineError, ValueError):
    """Nothing (or too little) to train on: no readable image, no text, or an empty split."""
