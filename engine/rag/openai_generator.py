"""The `openai:URL` generator: any OpenAI-compatible chat server (`vllm serve`, llama.cpp, OpenAI).

POSTs to `{URL}/chat/completions`; streaming reads server-sent events (`stream: true`). Images go
as base64 PNG data-URL `image_url` parts of the last user message.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx

from engine.rag.base import Message
from engine.rag.errors import GeneratorRequestError
from engine.rag.prompts import message_text

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

API_KEY_VARIABLES = ("MEDSEARCH_OPENAI_API_KEY", "OPENAI_API_KEY")


def image_to_data_url(image: Image) -> str:
    """A PIL image as a `data:image/png;base64,...` URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def to_openai_messages(messages: list[Message], images: list[Image] | None = None) -> list[Message]:
    """Copy `messages`, adding `images` as `image_url` parts after the last user message's text."""
    converted = [dict(message) for message in messages]
    if not images:
        return converted
    users = [index for index, message in enumerate(converted) if message.get("role") == "user"]
    if not users:
        raise ValueError("images need a user message to attach to; messages has none")
    last = converted[users[-1]]
    parts: list[dict[str, Any]] = [{"type": "text", "text": message_text(last.get("content"))}]
    parts += [{"type": "image_url", "image_url": {"url": image_to_data_url(image)}} for image in images]
    last["content"] = parts
    return converted


class OpenAIGenerator:
    """Client of an OpenAI-compatible `/chat/completions` endpoint.

    url: the API base, e.g. `http://127.0.0.1:8000/v1`. model: the served model name (when omitted,
    the first of `GET {url}/models`). api_key: else $MEDSEARCH_OPENAI_API_KEY or $OPENAI_API_KEY.
    """

    def __init__(
        self,
        url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"give the server as 'openai:http://host:port/v1', got {url!r}")
        self.url = url.rstrip("/")
        key = api_key or next((os.environ[v] for v in API_KEY_VARIABLES if os.environ.get(v)), None)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=connect_timeout)
        )
        self.model = model or self._first_model()
        self.name = f"openai:{self.url}"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()

    def _first_model(self) -> str:
        body = self._json(self._send("GET", "/models"), "/models")
        try:
            return str(body["data"][0]["id"])
        except (KeyError, IndexError, TypeError) as e:
            raise GeneratorRequestError(
                f"{self.url}/models lists no model; give one with create('openai:{self.url}', model=...)"
            ) from e

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise GeneratorRequestError(
                f"{self.url}{path} timed out ({e}); raise timeout= or check the server load"
            ) from e
        except httpx.RequestError as e:
            raise GeneratorRequestError(f"cannot reach {self.url}{path} ({e}); is the server running?") from e
        self._check(response, path)
        return response

    def _check(self, response: httpx.Response, path: str) -> None:
        if response.is_success:
            return
        detail = response.read().decode("utf-8", "replace")[:300]
        raise GeneratorRequestError(
            f"{self.url}{path} returned HTTP {response.status_code}: {detail!r}; "
            "check the server log, the model name and the API key"
        )

    def _json(self, response: httpx.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError as e:
            raise GeneratorRequestError(
                f"{self.url}{path} did not return JSON: {response.text[:200]!r}; is it an OpenAI-compatible API?"
            ) from e

    def _payload(
        self,
        messages: list[Message],
        images: list[Image] | None,
        max_tokens: int,
        temperature: float,
        stream: bool,
    ) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": to_openai_messages(messages, images),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }

    def generate(
        self,
        messages: list[Message],
        images: list[Image] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> str:
        """One non-streaming chat completion."""
        path = "/chat/completions"
        payload = self._payload(messages, images, max_tokens, temperature, stream=False)
        body = self._json(self._send("POST", path, json=payload), path)
        try:
            return str(body["choices"][0]["message"]["content"] or "").strip()
        except (KeyError, IndexError, TypeError) as e:
            raise GeneratorRequestError(
                f"{self.url}{path} reply has no choices[0].message.content: {body!r:.200}"
            ) from e

    def stream(
        self,
        messages: list[Message],
        images: list[Image] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """Yield `choices[0].delta.content` pieces from the server-sent events until `[DONE]`."""
        path = "/chat/completions"
        payload = self._payload(messages, images, max_tokens, temperature, stream=True)
        try:
            with self.client.stream("POST", path, json=payload) as response:
                self._check(response, path)
                started = False
                for line in response.iter_lines():
                    piece = self._delta(line, path)
                    if piece is None:
                        return
                    piece = piece if started else piece.lstrip()  # match generate(), which strips
                    if piece:
                        started = True
                        yield piece
        except httpx.TimeoutException as e:
            raise GeneratorRequestError(
                f"{self.url}{path} timed out while streaming ({e}); raise timeout="
            ) from e
        except httpx.RequestError as e:
            raise GeneratorRequestError(f"cannot reach {self.url}{path} ({e}); is the server running?") from e

    def _delta(self, line: str, path: str) -> str | None:
        """Text of one SSE line ("" for keep-alives and non-data lines, None at `[DONE]`)."""
        if not line.startswith("data:"):
            return ""
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return None
        try:
            event = json.loads(data)
        except ValueError as e:
            raise GeneratorRequestError(
                f"{self.url}{path} sent an event that is not JSON: {data[:200]!r}"
            ) from e
        if not isinstance(event, dict):
            raise GeneratorRequestError(
                f"{self.url}{path} sent an event that is not an object: {data[:200]!r}"
            )
        if "error" in event or event.get("object") == "error":  # servers report mid-stream failures this way
            error = event.get("error", event)
            message = error.get("message", error) if isinstance(error, dict) else error
            raise GeneratorRequestError(f"{self.url}{path} failed while streaming: {message}")
        choices = event.get("choices") or [{}]
        return str((choices[0].get("delta") or {}).get("content") or "")
