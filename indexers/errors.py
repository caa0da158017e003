"""Errors raised by indexers (which cannot import engine)."""

from __future__ import annotations


class IndexerError(Exception):
    """Root of every error raised by indexers."""


class UnknownBackendError(IndexerError, ValueError):
    """No index backend of that name."""


class BackendUnavailableError(IndexerError, ImportError):
    """The backend's library is not installed (the message names the pip extra)."""


class DimensionMismatchError(IndexerError, ValueError):
    """Vectors of the wrong dimension for this index."""


class FilterError(IndexerError, ValueError):
    """A filter expression that cannot be parsed or applied."""


class InvalidInputError(IndexerError, ValueError):
    """Ids, vectors, payloads or arguments that an index cannot take."""


class OptionsError(IndexerError, ValueError):
    """Backend options that contradict each other or the stored index."""


class StorageError(IndexerError, OSError):
    """A persisted index that is missing, unreadable or of another format."""


class CorruptIndexError(StorageError):
    """A persisted index whose files are damaged or missing (not merely of another backend or format): an
    index derived from another store (the engine's SQLite) can be rebuilt from it."""
