"""Errors raised by `engine.rag`; each subclasses `EngineError` so the CLI and API print them cleanly."""

from __future__ import annotations

from engine.errors import EngineError


class GeneratorError(EngineError):
    """Root of every error raised by a generator."""


class UnknownGeneratorError(GeneratorError, ValueError):
    """No generator family of that name."""


class GeneratorUnavailableError(GeneratorError, ImportError):
    """The generator needs a package, a weights file or hardware (a GPU) that is not there."""


class GeneratorRequestError(GeneratorError, RuntimeError):
    """A generation request failed: HTTP error, timeout, unreachable server or a malformed reply."""
