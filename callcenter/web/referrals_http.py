"""Referral and harasser-action routes.

Who may do what, in line with the case routes (``cases_http``):

- supervisors create, escalate and close referrals, and assign actions against a harasser;
  admins only read (the overdue list, any case's referrals);
- an agent or a counsellor sees the referrals and harasser actions of a case she works on
  (assigned to her, or opened on a call she answered), records a unit's acknowledgement
  on such a case (the unit calls the helpline back), and records the outcome of a harasser
  action she owns.

Nothing here answers with a number: a harasser is his token, a referral names a unit of
the directory, and free text was scrubbed by the services before it was stored.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from callcenter.cases.errors import CaseError
from callcenter.followups.harasser import (
    HarasserActionNotFound,
    HarasserActionService,
    HarasserActionView,
)
from callcenter.followups.referrals import (
    ReferralConflict,
    ReferralError,
    ReferralInvalid,
    ReferralNotFound,
    ReferralService,
    ReferralView,
)
from callcenter.pbx.models import CallRecord

from .auth import session_of
from .body import json_response, read_body, read_empty
from .cases_http import CaseAccess, web_error
from .errors import WebError, forbidden
from .keys import DEPS
from .openapi import ALL_ROLES, SUPERVISORS, api

SUPERVISOR = frozenset({"supervisor"})
#: Those who work cases (admins read only).
WORKERS = frozenset({"agent", "counsellor", "supervisor"})

Handler = TypeVar("Handler", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


@dataclass(frozen=True, slots=True)
class ReferralDesk:
    """What ``WebDeps.referrals`` holds: the two services these routes use."""

    referrals: ReferralService
    harassers: HarasserActionService


# -- bodies ---------------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReferralRequest(_Request):
    unit: str = Field(min_length=1, max_length=64, description="A unit code of the directory")
    reason: str = Field(min_length=1, max_length=4000)


class AcknowledgeRequest(_Request):
    acknowledged_by: str = Field(
        min_length=1, max_length=64,
        description="Who at the unit acknowledged, as they said it (name, post, desk)",
    )


class CloseRequest(_Request):
    note: str | None = Field(default=None, max_length=4000)


class HarasserActionRequest(_Request):
    harasser_token: str = Field(pattern=r"^[A-Za-z]-[0-9A-Za-z]{8}$")
    owner: str = Field(min_length=1, max_length=32, description="The officer who makes it")
    level: Literal[1, 2, 3] | None = Field(
        default=None, description="Leave out to let his record choose (a repeat harasser "
        "starts higher)",
    )
    unit: str | None = Field(default=None, max_length=64,
                             description="Police station unit for level 3")
    due_hours: float | None = Field(default=None, gt=0, le=24 * 60)
    note: str | None = Field(default=None, max_length=4000)


class OutcomeRequest(_Request):
    outcome: Literal["done", "unreachable", "refused", "wrong-number", "cancelled"]
    note: str | None = Field(default=None, max_length=4000)


class UnitOut(_Response):
    code: str
    name: str
    department: str
    department_name: str
    district: str | None
    sla_hours: float


class UnitList(_Response):
    units: list[UnitOut]


class ReferralOut(_Response):
    id: int
    case_reference: str
    unit: str
    unit_name: str
    department: str
    reason: str
    status: str
    created_by: str
    created_at: datetime
    deadline_at: datetime
    next_deadline_at: datetime | None
    escalation_level: int
    escalated_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledgement_recorded_by: str | None
    closed_by: str | None
    closed_at: datetime | None
    closing_note: str | None
    overdue: bool

    @classmethod
    def of(cls, view: ReferralView) -> ReferralOut:
        return cls(
            id=view.id, case_reference=view.case_reference, unit=view.unit_code,
            unit_name=view.unit_name, department=view.department, reason=view.reason,
            status=view.status.value, created_by=view.created_by, created_at=view.created_at,
            deadline_at=view.deadline_at, next_deadline_at=view.next_deadline_at,
            escalation_level=view.escalation_level, escalated_at=view.escalated_at,
            acknowledged_by=view.acknowledged_by, acknowledged_at=view.acknowledged_at,
            acknowledgement_recorded_by=view.acknowledgement_recorded_by,
            closed_by=view.closed_by, closed_at=view.closed_at,
            closing_note=view.closing_note, overdue=view.overdue,
        )


class ReferralList(_Response):
    referrals: list[ReferralOut]


class HarasserActionOut(_Response):
    id: int
    harasser_token: str
    level: int
    kind: str
    status: str
    owner: str
    basis: str
    created_by: str
    created_at: datetime
    due_at: datetime
    completed_at: datetime | None
    completed_by: str | None
    outcome_note: str | None
    referral_id: int | None

    @classmethod
    def of(cls, view: HarasserActionView) -> HarasserActionOut:
        return cls(
            id=view.id, harasser_token=view.harasser_token, level=view.level,
            kind=view.kind.value, status=view.status.value, owner=view.owner,
            basis=view.basis, created_by=view.created_by, created_at=view.created_at,
            due_at=view.due_at, completed_at=view.completed_at,
            completed_by=view.completed_by, outcome_note=view.outcome_note,
            referral_id=view.referral_id,
        )


class HarasserActionList(_Response):
    harasser_actions: list[HarasserActionOut]


class CaseFollowupsOut(_Response):
    referrals: list[ReferralOut]
    harasser_actions: list[HarasserActionOut]


# -- errors and helpers -----------------------------------------------------------------------


def _error(exc: ReferralError) -> WebError:
    if isinstance(exc, (ReferralNotFound, HarasserActionNotFound)):
        return WebError(404, exc.code, f"{str(exc).capitalize()}; check the number.")
    if isinstance(exc, ReferralInvalid):
        return WebError(422, "invalid_request", f"Check this field: {exc}.",
                        details=[{"field": exc.field, "problem": str(exc)}])
    if isinstance(exc, ReferralConflict):
        return WebError(409, exc.code, f"Refused: {exc}.")
    return WebError(500, exc.code, "Something is wrong with the referrals; tell an admin.")


def speaks_referrals(handler: Handler) -> Handler:
    """Let a handler raise the referral and case layers' errors; they leave as WebError."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ReferralError as exc:
            raise _error(exc) from None
        except CaseError as exc:
            raise web_error(exc) from None

    return wrapped  # type: ignore[return-value]


def _desk(request: web.Request) -> ReferralDesk:
    return request.app[DEPS].referrals  # type: ignore[no-any-return]


def _id(request: web.Request, name: str) -> int:
    return int(request.match_info[name])


async def _access(request: web.Request, reference: str) -> CaseAccess:
    deps = request.app[DEPS]
    view = await deps.cases.get_by_reference(reference)
    calls: list[CallRecord] = []
    if deps.store is not None and view.call_ids:
        async with deps.store.session() as session:
            calls = list(await session.scalars(
                select(CallRecord).where(CallRecord.id.in_(view.call_ids))
            ))
    return CaseAccess(session_of(request), view, calls)


async def _referral_access(request: web.Request) -> tuple[ReferralView, CaseAccess]:
    referral = await _desk(request).referrals.get(_id(request, "referral_id"))
    return referral, await _access(request, referral.case_reference)


# -- routes ---------------------------------------------------------------------------------


@api("The referral directory: units, their departments and SLA hours", roles=ALL_ROLES,
     response=UnitList, tags=["referrals"])
async def list_units(request: web.Request) -> web.StreamResponse:
    units = _desk(request).referrals.directory.units()
    return json_response(UnitList(units=[
        UnitOut(code=u.code, name=u.name, department=u.department.code,
                department_name=u.department.name, district=u.district,
                sla_hours=u.sla.total_seconds() / 3600)
        for u in units
    ]))


@api("Referrals past their deadline with no word from their unit, oldest first",
     roles=SUPERVISORS, response=ReferralList, tags=["referrals"])
@speaks_referrals
async def list_overdue(request: web.Request) -> web.StreamResponse:
    found = await _desk(request).referrals.overdue()
    return json_response(ReferralList(referrals=[ReferralOut.of(r) for r in found]))


@api("A case's referrals and harasser actions: an agent sees those of a case she works on",
     roles=ALL_ROLES, response=CaseFollowupsOut, tags=["referrals"], errors=[404])
@speaks_referrals
async def case_followups(request: web.Request) -> web.StreamResponse:
    access = await _access(request, request.match_info["reference"])
    access.require_work()
    desk = _desk(request)
    case_id = access.view.summary.id
    return json_response(CaseFollowupsOut(
        referrals=[ReferralOut.of(r) for r in await desk.referrals.for_case(case_id)],
        harasser_actions=[HarasserActionOut.of(a)
                          for a in await desk.harassers.for_case(case_id)],
    ))


@api("Refer a case to a unit of the directory; the deadline is now + the unit's SLA",
     roles=SUPERVISOR, body=ReferralRequest, response=ReferralOut, status=201,
     tags=["referrals"], errors=[404, 409])
@speaks_referrals
async def create_referral(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, ReferralRequest)
    session = session_of(request)
    referral = await _desk(request).referrals.refer(
        request.match_info["reference"], form.unit, form.reason, session.username
    )
    return json_response(ReferralOut.of(referral), status=201)


@api("One referral: an agent sees those of a case she works on", roles=ALL_ROLES,
     response=ReferralOut, tags=["referrals"], errors=[404])
@speaks_referrals
async def get_referral(request: web.Request) -> web.StreamResponse:
    referral, access = await _referral_access(request)
    access.require_work()
    return json_response(ReferralOut.of(referral))


@api("Record the unit's acknowledgement (on its word): staff working on the case",
     roles=WORKERS, body=AcknowledgeRequest, response=ReferralOut, tags=["referrals"],
     errors=[404, 409])
@speaks_referrals
async def acknowledge_referral(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, AcknowledgeRequest)
    referral, access = await _referral_access(request)
    access.require_work()
    updated = await _desk(request).referrals.acknowledge(
        referral.id, form.acknowledged_by, access.session.username
    )
    return json_response(ReferralOut.of(updated))


@api("Record that the unit is working on it (acknowledging it, if it had not): staff "
     "working on the case", roles=WORKERS, response=ReferralOut, tags=["referrals"],
     errors=[404, 409])
@speaks_referrals
async def referral_in_progress(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    referral, access = await _referral_access(request)
    access.require_work()
    updated = await _desk(request).referrals.start_work(referral.id, access.session.username)
    return json_response(ReferralOut.of(updated))


@api("Escalate a referral now, without waiting for its deadline", roles=SUPERVISOR,
     response=ReferralOut, tags=["referrals"], errors=[404, 409])
@speaks_referrals
async def escalate_referral(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    updated = await _desk(request).referrals.escalate(
        _id(request, "referral_id"), session_of(request).username
    )
    return json_response(ReferralOut.of(updated))


@api("Close a referral", roles=SUPERVISOR, body=CloseRequest, response=ReferralOut,
     tags=["referrals"], errors=[404])
@speaks_referrals
async def close_referral(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, CloseRequest)
    updated = await _desk(request).referrals.close(
        _id(request, "referral_id"), session_of(request).username, form.note
    )
    return json_response(ReferralOut.of(updated))


@api("Assign the next action against a harasser of the case to an officer; without a "
     "level, his record chooses it (a repeat harasser starts higher); level 3 refers the "
     "FIR to the police station", roles=SUPERVISOR, body=HarasserActionRequest,
     response=HarasserActionOut, status=201, tags=["harassers"], errors=[404, 409])
@speaks_referrals
async def propose_harasser_action(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, HarasserActionRequest)
    action = await _desk(request).harassers.propose(
        request.match_info["reference"], form.harasser_token, form.owner,
        session_of(request).username, level=form.level, unit_code=form.unit,
        due_in=timedelta(hours=form.due_hours) if form.due_hours is not None else None,
        note=form.note,
    )
    return json_response(HarasserActionOut.of(action), status=201)


@api("The harasser actions assigned to me and not yet done", roles=WORKERS,
     response=HarasserActionList, tags=["harassers"])
@speaks_referrals
async def my_harasser_actions(request: web.Request) -> web.StreamResponse:
    found = await _desk(request).harassers.assigned_to(session_of(request).username)
    return json_response(HarasserActionList(
        harasser_actions=[HarasserActionOut.of(a) for a in found]
    ))


@api("Harasser actions past their due time with no outcome, most overdue first",
     roles=SUPERVISORS, response=HarasserActionList, tags=["harassers"])
@speaks_referrals
async def overdue_harasser_actions(request: web.Request) -> web.StreamResponse:
    found = await _desk(request).harassers.overdue()
    return json_response(HarasserActionList(
        harasser_actions=[HarasserActionOut.of(a) for a in found]
    ))


@api("Record how a harasser action went: the officer who owns it, or a supervisor",
     roles=WORKERS, body=OutcomeRequest, response=HarasserActionOut, tags=["harassers"],
     errors=[404, 409])
@speaks_referrals
async def record_outcome(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, OutcomeRequest)
    session = session_of(request)
    harassers = _desk(request).harassers
    action = await harassers.get(_id(request, "action_id"))
    if session.role not in SUPERVISOR and action.owner != session.username:
        raise forbidden("Only the officer it is assigned to, or a supervisor, records it.")
    updated = await harassers.record_outcome(action.id, form.outcome, session.username,
                                             form.note)
    return json_response(HarasserActionOut.of(updated))


_ID = r"{referral_id:\d{1,9}}"

ROUTES: Mapping[tuple[str, str], Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
    ("GET", "/api/referral-units"): list_units,
    ("GET", "/api/referrals/overdue"): list_overdue,
    ("GET", f"/api/referrals/{_ID}"): get_referral,
    ("POST", f"/api/referrals/{_ID}/acknowledge"): acknowledge_referral,
    ("POST", f"/api/referrals/{_ID}/in-progress"): referral_in_progress,
    ("POST", f"/api/referrals/{_ID}/escalate"): escalate_referral,
    ("POST", f"/api/referrals/{_ID}/close"): close_referral,
    ("GET", "/api/cases/{reference}/referrals"): case_followups,
    ("POST", "/api/cases/{reference}/referrals"): create_referral,
    ("POST", "/api/cases/{reference}/harasser-actions"): propose_harasser_action,
    ("GET", "/api/harasser-actions/mine"): my_harasser_actions,
    ("GET", "/api/harasser-actions/overdue"): overdue_harasser_actions,
    ("POST", r"/api/harasser-actions/{action_id:\d{1,9}}/outcome"): record_outcome,
}


def add_routes(app: web.Application) -> None:
    for (method, path), handler in ROUTES.items():
        app.router.add_route(method, path, handler)
