"""Request bodies that carry a query image: JSON (image as base64) or a form (multipart with the image as a file
upload, or url-encoded), parsed into one pydantic model with FastAPI's 422 error shape (`/ask`, `/report`)."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from ui.api.images import bytes_from_base64, bytes_from_upload

Model = TypeVar("Model", bound=BaseModel)


def validate_body(model: type[Model], data: Any) -> Model:
    """`data` (raw JSON bytes or a dict of form fields) -> `model`, or a 422 located in the body."""
    try:
        if isinstance(data, bytes):
            return model.model_validate_json(data or b"{}")
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in errors]) from e


async def read_with_image(
    request: Request, model: type[Model], form_fields: tuple[str, ...], limit: int
) -> tuple[Model, bytes | None, str]:
    """(query, image bytes or None, a name for the image in error messages) from a JSON or form body.

    JSON bodies carry the image base64-encoded in the model's `image` field; forms carry it as a file upload
    (or a base64 string) in the `image` field and the other `form_fields` as text.

    Raises:
        HTTPException 415: another content type. UploadTooLargeError / QueryError: see `ui.api.images`.
    """
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type == "application/json":
        query = validate_body(model, await request.body())
        image = getattr(query, "image", None)
        return (query, bytes_from_base64(image, limit), "image (base64)") if image else (query, None, "")
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        async with request.form(max_files=1, max_fields=16) as form:
            fields = {
                name: form[name]
                for name in form_fields
                if isinstance(form.get(name), str) and form.get(name) != ""
            }
            query = validate_body(model, fields)
            upload = form.get("image")
            if isinstance(upload, UploadFile):
                return query, await bytes_from_upload(upload, limit), f"uploaded image {upload.filename!r}"
            if isinstance(upload, str) and upload:
                return query, bytes_from_base64(upload, limit), "image (base64)"
        return query, None, ""
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        f"content type {content_type!r}: send application/json or multipart/form-data",
    )
