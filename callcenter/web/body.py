"""Reading a JSON body defensively, and writing JSON answers."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .errors import WebError

Model = TypeVar("Model", bound=BaseModel)


async def read_body(request: web.Request, model: type[Model]) -> Model:
    """The body as ``model``; 415, 413, 400 or 422 with a code when it is not one.

    Only ``application/json`` is read: a cross-site HTML form cannot send it without a
    CORS preflight, which this API never grants.
    """
    if request.content_type != "application/json":
        raise WebError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await request.read()  # aiohttp enforces client_max_size here (413)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WebError(400, "malformed_json", "The body is not valid JSON.") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Never echo the input back: it may be a password or a case note.
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        fields = ", ".join(d["field"] for d in details)
        raise WebError(
            422, "invalid_request", f"Check these fields: {fields}.", details=details
        ) from None


async def read_empty(request: web.Request) -> None:
    """Commands without parameters accept no body, ``{}``, or nothing at all."""
    raw = await request.read()
    if raw.strip() in (b"", b"{}"):
        return
    raise WebError(422, "invalid_request", "This command takes no body.")


def json_response(data: Any, *, status: int = 200) -> web.Response:
    if isinstance(data, BaseModel):
        text = data.model_dump_json()
    else:
        text = json.dumps(data, separators=(",", ":"), default=_default)
    return web.Response(text=text, status=status, content_type="application/json")


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
