"""The `Generator` protocol: chat messages (OpenAI format) and optional images in, text out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL.Image import Image

Message = dict[str, Any]
"""One chat message: {"role": "system" | "user" | "assistant", "content": str | list of parts}."""


@runtime_checkable
class Generator(Protocol):
    """A text generator chosen by name through `engine.rag.create`.

    `messages` follow the OpenAI chat format; `images` (PIL) go with the last user message for
    models that can see them and are ignored by text-only generators. `temperature=0.0` is greedy.
    """

    name: str

    def generate(
        self,
        messages: list[Message],
        images: list[Image] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> str:
        """Return the whole answer."""
        ...

    def stream(
        self,
        messages: list[Message],
        images: list[Image] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """Yield the answer in pieces; their concatenation equals `generate`'s result."""
        ...
