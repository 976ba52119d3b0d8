"""Callback and follow-up routes: the supervisors' list of abandons awaiting a decision,
the agent's word after a callback, and follow-up calls on a case.

Nothing here ever carries a number: a callback is shown by her token and the reason.
Follow-ups belong to a case, so they follow the case's rule: only staff who may work on
that case (a supervisor, the assigned agent, or an agent who answered one of its calls).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from callcenter.followups.callbacks import (
    CallbackConflict,
    CallbackInvalid,
    CallbackNotFound,
    CallbackService,
    CallbackView,
)

from .auth import session_of
from .body import json_response, read_body, read_empty
from .cases_http import CaseAccess, _calls_of, speaks_cases
from .errors import WebError
from .keys import DEPS
from .openapi import ALL_ROLES, SUPERVISORS, api

SUPERVISOR = frozenset({"supervisor"})

Handler = TypeVar("Handler", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ApproveRequest(_Request):
    #: When to call (default: now). Times without an offset are refused by pydantic's
    #: aware-datetime check in FollowupRequest; here too, so nobody guesses a timezone.
    due_at: datetime | None = None


class OutcomeRequest(_Request):
    outcome: Literal["wrong_person", "unsafe_to_talk"]


class FollowupRequest(_Request):
    due_at: datetime = Field(description="When to call her (ISO 8601 with an offset)")


class CallbackOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    kind: str
    status: str
    token: str
    reason: str
    category: str | None
    language: str | None
    due_at: datetime
    attempts: int
    outcome: str | None
    outcome_by: str | None
    repeats: int
    requested_by: str
    decided_by: str | None
    created_at: datetime

    @classmethod
    def of(cls, view: CallbackView) -> CallbackOut:
        # The view's fields of the same names; the ids of its case and call stay inside.
        return cls.model_validate(view, from_attributes=True)


class CallbackList(BaseModel):
    model_config = ConfigDict(frozen=True)

    callbacks: list[CallbackOut]


def speaks_callbacks(handler: Handler) -> Handler:
    """The follow-ups layer's errors as the API says them (stable codes, no numbers)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except CallbackNotFound:
            raise WebError(404, "callback_not_found", "No such callback.") from None
        except CallbackConflict as exc:
            raise WebError(409, "callback_conflict", f"Refused: {exc}.") from None
        except CallbackInvalid as exc:
            raise WebError(422, "invalid_request", f"{exc}.") from None

    return wrapped  # type: ignore[return-value]


def _callbacks(request: web.Request) -> CallbackService:
    return request.app[DEPS].callbacks  # type: ignore[no-any-return]


def _callback_id(request: web.Request) -> int:
    text = request.match_info["callback_id"]
    if not text.isdigit() or len(text) > 9:
        raise WebError(404, "callback_not_found", "No such callback.")
    return int(text)


async def _case_access(request: web.Request) -> CaseAccess:
    view = await request.app[DEPS].cases.get_by_reference(request.match_info["reference"])
    access = CaseAccess(session_of(request), view, await _calls_of(request, view))
    access.require_work()
    return access


# -- the supervisors' decisions ------------------------------------------------------------


@api("Abandoned calls whose caller did not say a callback is safe: they wait for a "
     "supervisor's decision", roles=SUPERVISOR, response=CallbackList, tags=["callbacks"])
async def awaiting_decision(request: web.Request) -> web.StreamResponse:
    views = await _callbacks(request).awaiting_decision()
    return json_response(CallbackList(callbacks=[CallbackOut.of(v) for v in views]))


@api("Approve a callback awaiting a decision: it is scheduled (now, or at due_at)",
     roles=SUPERVISOR, body=ApproveRequest, response=CallbackOut, tags=["callbacks"],
     errors=[404, 409, 422])
@speaks_callbacks
async def approve(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, ApproveRequest)
    if form.due_at is not None and form.due_at.tzinfo is None:
        raise WebError(422, "invalid_request", "Give due_at with its offset (+05:30).")
    view = await _callbacks(request).approve(
        _callback_id(request), session_of(request).username, form.due_at
    )
    return json_response(CallbackOut.of(view))


@api("Dismiss a callback awaiting a decision: she will not be called",
     roles=SUPERVISOR, response=CallbackOut, tags=["callbacks"], errors=[404, 409])
@speaks_callbacks
async def dismiss(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    view = await _callbacks(request).dismiss(_callback_id(request), session_of(request).username)
    return json_response(CallbackOut.of(view))


@api("After an answered callback: record that someone else answered (wrong_person) or "
     "that she could not talk safely (unsafe_to_talk). Only the agent who took the "
     "callback's call, or a supervisor (403 not_your_callback otherwise)", roles=ALL_ROLES,
     body=OutcomeRequest, response=CallbackOut, tags=["callbacks"],
     errors=[403, 404, 409, 422])
@speaks_callbacks
async def record_outcome(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, OutcomeRequest)
    who = session_of(request)
    service = _callbacks(request)
    callback_id = _callback_id(request)
    # What she said on that call is known only to the agent who heard it.
    if who.role not in SUPERVISORS and not await service.took_call(callback_id, who.endpoint):
        raise WebError(403, "not_your_callback",
                       "Only the agent who took this callback's call, or a supervisor, "
                       "may record how it went.")
    view = await service.record_outcome(callback_id, form.outcome, who.username)
    return json_response(CallbackOut.of(view))


# -- follow-up calls on a case ----------------------------------------------------------------


@api("Follow-up calls and callbacks of a case", roles=ALL_ROLES, response=CallbackList,
     tags=["callbacks"], errors=[404])
@speaks_cases
async def list_followups(request: web.Request) -> web.StreamResponse:
    access = await _case_access(request)
    views = await _callbacks(request).for_case(access.view.summary.id)
    return json_response(CallbackList(callbacks=[CallbackOut.of(v) for v in views]))


@api("Set a follow-up call to her on a date (through the same safe path as callbacks)",
     roles=ALL_ROLES, body=FollowupRequest, response=CallbackOut, status=201,
     tags=["callbacks"], errors=[404, 422])
@speaks_cases
@speaks_callbacks
async def schedule_followup(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, FollowupRequest)
    if form.due_at.tzinfo is None:
        raise WebError(422, "invalid_request", "Give due_at with its offset (+05:30).")
    access = await _case_access(request)
    view = await _callbacks(request).schedule_followup(
        access.view.summary.id, form.due_at, access.session.username
    )
    return json_response(CallbackOut.of(view), status=201)


@api("Cancel a follow-up call that has not started", roles=ALL_ROLES, response=CallbackOut,
     tags=["callbacks"], errors=[404, 409])
@speaks_cases
@speaks_callbacks
async def cancel_followup(request: web.Request) -> web.StreamResponse:
    access = await _case_access(request)
    service = _callbacks(request)
    callback_id = _callback_id(request)
    if (await service.get(callback_id)).case_id != access.view.summary.id:
        raise CallbackNotFound(f"no callback {callback_id} on this case")
    view = await service.cancel(callback_id, access.session.username)
    return json_response(CallbackOut.of(view))


ROUTES: dict[tuple[str, str], Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
    ("GET", "/api/callbacks/awaiting"): awaiting_decision,
    ("POST", "/api/callbacks/{callback_id}/approve"): approve,
    ("POST", "/api/callbacks/{callback_id}/dismiss"): dismiss,
    ("POST", "/api/callbacks/{callback_id}/outcome"): record_outcome,
    ("GET", "/api/cases/{reference}/followups"): list_followups,
    ("POST", "/api/cases/{reference}/followups"): schedule_followup,
    ("DELETE", "/api/cases/{reference}/followups/{callback_id}"): cancel_followup,
}


def add_routes(app: web.Application) -> None:
    for (method, path), handler in ROUTES.items():
        app.router.add_route(method, path, handler)
