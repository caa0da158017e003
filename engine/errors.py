"""Errors raised by the engine; `MEDSEARCH_ERRORS` is what the CLI and API turn into clean messages."""

from __future__ import annotations

from indexers.errors import IndexerError
from kg.errors import ConceptNotFoundError, KGError


class EngineError(Exception):
    """Root of every error raised by engine."""


class DatasetFormatError(EngineError, ValueError):
    """A dataset folder or file is not in the expected format (names the file and the problem)."""


class UnknownDatasetError(EngineError, ValueError):
    """No loader of that name."""


class UnknownEncoderError(EngineError, ValueError):
    """No encoder family of that name."""


class EncoderUnavailableError(EngineError, ImportError):
    """The encoder needs a package or a weights file that is not there."""


class CollectionError(EngineError, RuntimeError):
    """A collection is missing, locked or inconsistent."""


class RecordNotFoundError(CollectionError, KeyError):
    """No record with that id."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "record not found"


class ModelNotTrainedError(EngineError, LookupError):
    """A model this command needs has not been trained in this home (the message names the command to run)."""


class ImageReadError(EngineError, ValueError):
    """An image file that cannot be read: missing, not an image, truncated, or too large."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class QueryError(EngineError, ValueError):
    """A search request is malformed (bad filter, empty query, unknown mode or space)."""


__all__ = ["ConceptNotFoundError", "IndexerError", "KGError"]  # re-exported for ui

MEDSEARCH_ERRORS: tuple[type[Exception], ...] = (EngineError, IndexerError, KGError)
