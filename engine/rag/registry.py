"""Generator registry: `create("local")`, `create("vllm:MODEL")`, `create("openai:URL", model=...)`, `create("extractive")`.

A name is split once at the first ":" into family and argument (`openai:http://host:8000/v1` keeps
its URL whole). Importing a family's module is the lazy boundary: nothing heavy loads until `create`.
"""

from __future__ import annotations

import importlib
from typing import Any

from engine.rag.base import Generator
from engine.rag.errors import GeneratorUnavailableError, UnknownGeneratorError

# family -> ("module:Factory", pip extra needed by the module)
_FAMILIES: dict[str, tuple[str, str]] = {
    "local": ("engine.rag.local_generator:LocalGenerator", "llm"),
    "vllm": ("engine.rag.vllm_generator:VllmGenerator", "vllm"),
    "openai": ("engine.rag.openai_generator:OpenAIGenerator", "api"),
    "extractive": ("engine.rag.extractive:ExtractiveGenerator", ""),
}


def names() -> list[str]:
    """Generator families that `create` knows."""
    return sorted(_FAMILIES)


def register(family: str, target: str, extra: str = "") -> None:
    """Add a family: `target` is "module:Factory", called as Factory(argument, **options)."""
    _FAMILIES[family] = (target, extra)


def create(name: str, **options: Any) -> Generator:
    """Build a generator from its registry name ("family" or "family:argument")."""
    family, _, argument = name.partition(":")
    if family not in _FAMILIES:
        raise UnknownGeneratorError(
            f"unknown generator {name!r}; choose one of {names()} (as 'family' or 'family:arg')"
        )
    target, extra = _FAMILIES[family]
    module_name, _, factory_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        hint = (
            f"pip install 'medsearch[{extra}]'" if extra else "is medsearch installed with its dependencies?"
        )
        raise GeneratorUnavailableError(f"generator {name!r} needs module {e.name!r}: {hint}") from e
    factory = getattr(module, factory_name)
    generator = factory(argument, **options) if argument else factory(**options)
    generator.name = name
    return generator
