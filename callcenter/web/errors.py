"""The one error type that crosses HTTP, and how other layers' errors map onto it.

Every refusal the API gives is ``{"error": {"code": "...", "message": "..."}}`` with a
stable ``code`` a console can switch on and a message a person can act on. Handlers raise
:class:`WebError` (or let a domain error through); the error middleware shapes the body.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from callcenter.agents.errors import (
    AgentError,
    InvalidAccountData,
    InvalidTransition,
    UnknownAccount,
)


class WebError(Exception):
    """A request refused with a stable ``code``; ``headers`` go on the response."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def unauthenticated() -> WebError:
    return WebError(401, "unauthenticated", "Sign in first (POST /api/session).")


def forbidden(message: str = "Your role does not allow this.") -> WebError:
    return WebError(403, "forbidden", message)


def not_found(message: str = "Nothing here.") -> WebError:
    return WebError(404, "not_found", message)


# aiohttp raises these itself (routing, body limits); keep their status, give them a code.
_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request could not be understood."),
    404: ("not_found", "No such page or API route."),
    405: ("method_not_allowed", "This route does not accept that method."),
    413: ("body_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send the body as application/json."),
}


def from_http_exception(exc: web.HTTPException) -> WebError:
    code, message = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
    return WebError(exc.status, code, message, headers=headers)


def from_agent_error(exc: AgentError) -> WebError:
    """The agents domain already words its errors for people; keep code and message."""
    if isinstance(exc, UnknownAccount):
        return WebError(404, exc.code, str(exc))
    if isinstance(exc, InvalidAccountData):
        return WebError(422, exc.code, str(exc))
    if isinstance(exc, InvalidTransition):
        return WebError(409, exc.code, str(exc))
    return WebError(409, exc.code, str(exc))
