"""Errors raised by kg (which cannot import engine)."""

from __future__ import annotations


class KGError(Exception):
    """Root of every error raised by kg."""


class OntologyFormatError(KGError, ValueError):
    """An ontology file that cannot be parsed (names the file, line and problem)."""


class ConceptNotFoundError(KGError, KeyError):
    """No concept with that id or name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "concept not found"


class GraphFormatError(KGError, ValueError):
    """A saved graph file that is not a medsearch graph or has another format version."""


class InvalidArgumentError(KGError, ValueError):
    """An argument outside its allowed values (a polarity, a depth)."""
