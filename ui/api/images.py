"""Query images from HTTP requests: base64 (JSON) or an uploaded file (multipart), size-checked and decoded.

Decoding is `engine.ingest.load_image` (the ingest's rules: pixel limit against decompression bombs, full
decode, RGB), run on the bytes in memory; errors name the upload rather than a temporary file.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from typing import Any

from starlette.datastructures import UploadFile

from engine.errors import ImageReadError, QueryError
from engine.ingest import load_image
from ui.api.errors import UploadTooLargeError

logger = logging.getLogger(__name__)


def _too_large(size: int, limit: int, what: str) -> UploadTooLargeError:
    return UploadTooLargeError(
        f"{what} is {size} bytes; the limit is {limit} bytes (MEDSEARCH_MAX_UPLOAD_BYTES on the server)"
    )


def bytes_from_base64(data: str, limit: int) -> bytes:
    """Decode a base64 string or `data:image/...;base64,` URL, refusing more than `limit` decoded bytes.

    Raises:
        UploadTooLargeError: the decoded image would exceed `limit`.
        QueryError: not valid base64.
    """
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if not header.endswith(";base64"):
            raise QueryError("image: a data: URL must be base64-encoded (data:image/png;base64,...)")
    data = "".join(data.split())
    estimated = len(data) * 3 // 4 - data[-2:].count("=")
    if estimated > limit:
        raise _too_large(estimated, limit, "image")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise QueryError(f"image: not valid base64 ({e}); send the file's bytes base64-encoded") from e


async def bytes_from_upload(upload: UploadFile, limit: int) -> bytes:
    """Read an uploaded file, refusing more than `limit` bytes (reads at most `limit + 1`)."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise _too_large(upload.size or len(data), limit, f"uploaded image {upload.filename!r}")
    return data


def decode_image(data: bytes, name: str) -> Any:
    """Image bytes -> RGB PIL image, by `load_image`'s rules; raises ImageReadError naming `name`."""
    if not data:
        raise ImageReadError(name, "empty file")
    try:
        return load_image(io.BytesIO(data))  # PIL reads file objects as well as paths
    except ImageReadError as e:
        raise ImageReadError(name, e.reason) from e
