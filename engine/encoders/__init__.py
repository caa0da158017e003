"""Encoders: one `Encoder` protocol, one registry (`create`, `names`)."""

from engine.encoders.base import Encoder, l2_normalise
from engine.encoders.registry import create, names, register

__all__ = ["Encoder", "create", "l2_normalise", "names", "register"]
