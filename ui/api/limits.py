"""`BodySizeLimitMiddleware`: refuse request bodies over a limit with 413, before they are buffered.

A declared `Content-Length` over the limit is refused at once; a chunked body is counted as it streams and
cut off when it passes the limit (413 if no response has started).
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.api.errors import error_response

logger = logging.getLogger(__name__)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Pure ASGI middleware (streaming responses pass through untouched)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, int(declared))
            return

        received = 0
        overflow = False
        forwarded = False

        async def counting_receive() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflow = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # once the body overflowed, whatever the app makes of the error (a 400 or 500) is replaced by a 413
            nonlocal forwarded
            if overflow and not forwarded:
                return
            forwarded = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            pass
        if overflow and not forwarded:
            await self._refuse(scope, receive, send, received)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        logger.info(
            "refused %s %s: body of %d bytes > %d", scope["method"], scope["path"], size, self.max_bytes
        )
        response = error_response(
            413,
            f"request body is larger than {self.max_bytes} bytes (at least {size}); "
            "query images are limited by MEDSEARCH_MAX_UPLOAD_BYTES",
            "UploadTooLargeError",
        )
        await response(scope, receive, send)
