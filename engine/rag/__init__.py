"""Retrieval-augmented generation: the `Generator` protocol, its registry and prompt building."""

from engine.rag.base import Generator, Message
from engine.rag.errors import (
    GeneratorError,
    GeneratorRequestError,
    GeneratorUnavailableError,
    UnknownGeneratorError,
)
from engine.rag.prompts import Context, build_messages, parse_citations
from engine.rag.registry import create, names, register

__all__ = [
    "Context",
    "Generator",
    "GeneratorError",
    "GeneratorRequestError",
    "GeneratorUnavailableError",
    "Message",
    "UnknownGeneratorError",
    "build_messages",
    "create",
    "names",
    "parse_citations",
    "register",
]
