"""Encoder registry: `create("minilm")`, `create("open_clip:ViT-B-32", pretrained=PATH)`, `create("trained:PATH")`.

A name is split once at the first ":" into family and argument (as open_clip parses `hf-hub:`).
Importing a family's module is the lazy boundary: nothing heavy is imported until `create`.
"""

from __future__ import annotations

import importlib
from typing import Any

from engine.encoders.base import Encoder
from engine.errors import EncoderUnavailableError, UnknownEncoderError

# family -> ("module:factory", pip extra needed by the module)
_FAMILIES: dict[str, tuple[str, str]] = {
    "minilm": ("engine.encoders.minilm:MiniLMEncoder", ""),
    "open_clip": ("engine.encoders.open_clip_encoder:OpenClipEncoder", "clip"),
    "dinov2": ("engine.encoders.dinov2:Dinov2Encoder", ""),
    "trained": ("engine.encoders.trained:TrainedEncoder", "clip"),
}


def names() -> list[str]:
    """Encoder families that `create` knows."""
    return sorted(_FAMILIES)


def register(family: str, target: str, extra: str = "") -> None:
    """Add a family: `target` is "module:Factory", called as Factory(argument, **options)."""
    _FAMILIES[family] = (target, extra)


def create(name: str, **options: Any) -> Encoder:
    """Build an encoder from its registry name ("family" or "family:argument")."""
    family, _, argument = name.partition(":")
    if family not in _FAMILIES:
        raise UnknownEncoderError(
            f"unknown encoder {name!r}; choose one of {names()} (as 'family' or 'family:arg')"
        )
    target, extra = _FAMILIES[family]
    module_name, _, factory_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        hint = (
            f"pip install 'medsearch[{extra}]'" if extra else "is medsearch installed with its dependencies?"
        )
        raise EncoderUnavailableError(f"encoder {name!r} needs module {e.name!r}: {hint}") from e
    factory = getattr(module, factory_name)
    encoder = factory(argument, **options) if argument else factory(**options)
    encoder.name = name
    return encoder
