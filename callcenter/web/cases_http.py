"""Case routes: search, the case file and its timeline, consent, the reveal, blocks, audit.

Who may touch a case:

- supervisors and admins work on every case (admins only read, search and verify the
  audit log beyond that: consent, reveal and blocks are a supervisor's decisions);
- an agent or a counsellor works on a case assigned to her or opened on a call she
  answered; only the agent on such a call records or withdraws consent, and only the
  assigned agent edits the description.

Role is checked twice on purpose: ``@api(roles=...)`` keeps a role out of a route before
the handler runs; the handler then checks her relation to this one case. The reveal is
the exception: every role reaches the consent service, which refuses all but a
supervisor *and audits the attempt*, so an agent trying to see a number leaves a row.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import select

from callcenter.cases.audit import AuditLog
from callcenter.cases.consent import (
    ConsentInvalid,
    ConsentService,
    NothingToReveal,
    OverrideReasonTooShort,
    RevealNotAllowed,
    RevealRefused,
    RevealWithoutConsent,
)
from callcenter.cases.errors import CaseError, InvalidNumber, InvalidReference
from callcenter.cases.models import CallerIdentity
from callcenter.cases.search import CaseFilter, CaseSearch, SearchNotAllowed
from callcenter.cases.service import (
    CaseChanges,
    CaseInvalid,
    CaseNotFound,
    CaseService,
    CaseView,
    InvalidTransition,
)
from callcenter.cases.vault import Purpose
from callcenter.pbx.models import CallRecord

from .auth import session_of
from .body import json_response, read_body, read_empty
from .cases_schemas import (
    ActionRequest,
    AuditProblemOut,
    AuditVerifyOut,
    BlockOut,
    BlockRequest,
    CaseCallOut,
    CaseList,
    CaseOut,
    CaseQuery,
    CaseSummaryOut,
    CaseUpdateRequest,
    ConsentOut,
    ConsentRequest,
    HarasserOut,
    HarasserRequest,
    NoteRequest,
    RevealOut,
    RevealRequest,
    TimelineEntryOut,
)
from .errors import WebError, forbidden
from .keys import DEPS
from .openapi import ALL_ROLES, SUPERVISORS, api
from .sessions import Session

log = logging.getLogger(__name__)

SUPERVISOR = frozenset({"supervisor"})
ADMIN = frozenset({"admin"})
#: Roles that decide about her identity: consent on her behalf, reveal, block.
DECIDES = SUPERVISOR
#: Errors every case route can answer with, besides the role's 401/403.
_CASE_ERRORS = (404,)

Handler = TypeVar("Handler", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


# -- mapping the cases domain's errors onto HTTP ------------------------------------------


def web_error(exc: CaseError) -> WebError:
    """The cases layer's error as the API says it: a stable code, a message to act on.

    Messages of the cases layer never carry a number (see ``cases.errors``), so they can
    be shown as they are.
    """
    if isinstance(exc, (CaseNotFound, InvalidReference)):
        return WebError(404, "case_not_found",
                        "No case with this reference; check the eleven digits.")
    if isinstance(exc, InvalidTransition):
        return WebError(409, "invalid_transition", f"Refused: {exc}.")
    if isinstance(exc, CaseInvalid):
        return WebError(422, "invalid_request", f"Check this field: {exc}.",
                        details=[{"field": exc.field, "problem": str(exc)}])
    if isinstance(exc, OverrideReasonTooShort):
        return WebError(422, "invalid_request", f"Refused and recorded: {exc}.",
                        details=[{"field": "override_reason", "problem": str(exc),
                                  "audit_seq": exc.audit_seq}])
    if isinstance(exc, RevealWithoutConsent):
        return WebError(403, "consent_required", f"Refused and recorded: {exc}.",
                        details=[{"audit_seq": exc.audit_seq}])
    if isinstance(exc, NothingToReveal):
        return WebError(409, "nothing_to_reveal",
                        "She withheld her number: there is no number to reveal.",
                        details=[{"audit_seq": exc.audit_seq}])
    if isinstance(exc, (RevealNotAllowed, RevealRefused)):
        return WebError(403, "forbidden", "Only a supervisor can reveal a number; "
                        "this attempt is recorded.", details=[{"audit_seq": exc.audit_seq}])
    if isinstance(exc, SearchNotAllowed):
        return forbidden("Case search and export are for supervisors.")
    if isinstance(exc, (ConsentInvalid, InvalidNumber)):
        return WebError(422, "invalid_request", f"{exc}.")
    # The vault's keys, a broken seal, the audit log refusing a row: not hers to fix.
    log.error("cases: %s (%s)", type(exc).__name__, exc.code)
    return WebError(500, exc.code, "Something is wrong with the case store; tell an admin.")


def speaks_cases(handler: Handler) -> Handler:
    """Let a handler raise the cases layer's errors; they leave as :class:`WebError`."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except CaseError as exc:  # the vault's and the audit log's errors included
            raise web_error(exc) from None

    return wrapped  # type: ignore[return-value]


# -- collaborators and helpers ------------------------------------------------------------


def _cases(request: web.Request) -> CaseService:
    return request.app[DEPS].cases  # type: ignore[no-any-return]


def _consent(request: web.Request) -> ConsentService:
    return request.app[DEPS].consent  # type: ignore[no-any-return]


def _search(request: web.Request) -> CaseSearch:
    return request.app[DEPS].search  # type: ignore[no-any-return]


def _audit(request: web.Request) -> AuditLog:
    return request.app[DEPS].audit  # type: ignore[no-any-return]


def _reference(request: web.Request) -> str:
    return request.match_info["reference"]


def read_query(request: web.Request) -> CaseQuery:
    """The search filter from the query string; 422 naming the field when it is wrong."""
    raw = {key: value for key, value in request.query.items() if value.strip()}
    try:
        return CaseQuery.model_validate(raw)
    except ValidationError as exc:
        # Never echo the input: a token box is where a number gets typed by mistake.
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(query)", "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        fields = ", ".join(d["field"] for d in details)
        raise WebError(422, "invalid_request", f"Check these filters: {fields}.",
                       details=details) from None


def _filter(query: CaseQuery) -> CaseFilter:
    return CaseFilter(
        reference=query.reference, status=query.status, category=query.category,
        district=query.district, created_from=query.created_from,
        created_to=query.created_to, token=query.token,
    )


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a, b)


async def _calls_of(request: web.Request, view: CaseView) -> list[CallRecord]:
    store = request.app[DEPS].store
    if store is None or not view.call_ids:
        return []
    async with store.session() as session:
        rows = await session.scalars(
            select(CallRecord).where(CallRecord.id.in_(view.call_ids)).order_by(CallRecord.id)
        )
        return list(rows)


class CaseAccess:
    """One signed-in person's relation to one case."""

    def __init__(self, session: Session, view: CaseView, calls: Sequence[CallRecord]) -> None:
        self.session = session
        self.view = view
        self.calls = calls
        self.sees_all = session.role in SUPERVISORS
        self.assigned = _same(view.summary.assigned_to, session.username)
        #: She answered one of the case's calls: she heard what was said.
        self.on_a_call = any(_same(c.agent_interface, session.endpoint) for c in calls)

    @property
    def works_on(self) -> bool:
        return self.sees_all or self.assigned or self.on_a_call

    @property
    def speaks_for_her(self) -> bool:
        """Records or withdraws her consent: a supervisor, or the agent she spoke to."""
        return self.session.role in DECIDES or (
            self.session.role not in SUPERVISORS and self.on_a_call
        )

    def require_work(self) -> None:
        if not self.works_on:
            raise forbidden("This case is assigned to someone else; ask a supervisor.")


async def _access(request: web.Request) -> CaseAccess:
    """The case of the route and her relation to it; 404 before any role question."""
    view = await _cases(request).get_by_reference(_reference(request))
    return CaseAccess(session_of(request), view, await _calls_of(request, view))


async def _consents(request: web.Request, view: CaseView) -> list[ConsentOut]:
    identity = view.summary.caller_identity_id
    if identity is None:
        return []
    return [ConsentOut.of(c) for c in await _consent(request).consents_for(identity)]


async def _case_out(request: web.Request, view: CaseView,
                    calls: Sequence[CallRecord] | None = None) -> CaseOut:
    if calls is None:
        calls = await _calls_of(request, view)
    return CaseOut.of_view(
        view,
        [CaseCallOut(node=c.node, linkedid=c.linkedid) for c in calls],
        await _consents(request, view),
    )


def _caller_identity_of(access: CaseAccess) -> int:
    identity = access.view.summary.caller_identity_id
    if identity is None:
        raise WebError(409, "no_caller_identity",
                       "This case has no caller identity, so there is no consent to record.")
    return identity


async def _caller_by_token(request: web.Request, token: str) -> int:
    store = request.app[DEPS].store
    code = token.strip().upper()
    if store is None:
        raise WebError(503, "store_not_configured", "The case store is not configured.")
    async with store.session() as session:
        ids = list(await session.scalars(
            select(CallerIdentity.id).where(
                CallerIdentity.token_code == code,
                CallerIdentity.purpose == Purpose.CALLER.value,
            ).limit(2)
        ))
    if not ids:
        raise WebError(404, "caller_not_found", "No caller with this token.")
    if len(ids) > 1:
        # Two numbers share a 40-bit short code: blocking one would block a stranger.
        raise WebError(409, "ambiguous_token",
                       "This token names more than one caller; block from her case instead.")
    return ids[0]


# -- search and export --------------------------------------------------------------------


@api("Search cases (reference, status, category, district, from, to, token, limit)",
     roles=SUPERVISORS, response=CaseList, tags=["cases"], errors=[422])
@speaks_cases
async def search_cases(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    query = read_query(request)
    found = await _search(request).search(_filter(query), role=session.role, limit=query.limit)
    return json_response(CaseList(cases=[CaseSummaryOut.of(s) for s in found],
                                  limit=query.limit))


@api("Export matching cases as CSV: tokens only, no free text; audited",
     roles=SUPERVISORS, tags=["cases"], content_type="text/csv", errors=[422])
@speaks_cases
async def export_cases(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    query = read_query(request)
    text = await _search(request).export_csv(
        _filter(query), actor=session.username, role=session.role
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="cases-{stamp}.csv"',
            "Cache-Control": "no-store, private",
        },
    )


# -- one case -----------------------------------------------------------------------------


@api("One case with its timeline; an agent sees only a case assigned to her or opened on "
     "a call she answered", roles=ALL_ROLES, response=CaseOut, tags=["cases"],
     errors=_CASE_ERRORS)
@speaks_cases
async def get_case(request: web.Request) -> web.StreamResponse:
    access = await _access(request)
    access.require_work()
    return json_response(await _case_out(request, access.view, access.calls))


@api("Change a case: status (valid transitions only), assignment, fields. The assigned "
     "agent may change only the description", roles=ALL_ROLES, body=CaseUpdateRequest,
     response=CaseOut, tags=["cases"], errors=[*_CASE_ERRORS, 409])
@speaks_cases
async def update_case(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, CaseUpdateRequest)
    access = await _access(request)
    session = access.session
    changes = form.field_changes()
    if not access.sees_all:
        if not access.assigned:
            raise forbidden("Only the agent the case is assigned to, or a supervisor, "
                            "can change it.")
        if form.status is not None or set(changes) - {"description"}:
            raise forbidden("You can change the description of your case; ask a supervisor "
                            "for its status, assignment or other fields.")
    reference = _reference(request)
    cases = _cases(request)
    # Status first: it is the change most likely refused (409), and then nothing has
    # changed. The fields were validated above, so they are unlikely to fail after it.
    if form.status is not None:
        await cases.change_status(reference, form.status, session.username, form.reason)
    if changes:
        view = await cases.update(reference, CaseChanges(**changes), session.username)
    else:
        view = await cases.get_by_reference(reference)
    return json_response(await _case_out(request, view, access.calls))


@api("Add a note to the case's timeline", roles=ALL_ROLES, body=NoteRequest,
     response=TimelineEntryOut, status=201, tags=["cases"], errors=_CASE_ERRORS)
@speaks_cases
async def add_note(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, NoteRequest)
    access = await _access(request)
    access.require_work()
    entry = await _cases(request).add_note(_reference(request), form.text,
                                           access.session.username)
    return json_response(_entry(entry), status=201)


@api("Record what was done (counselling, warning call, referral...); a referral or a "
     "prank closure also moves the status", roles=ALL_ROLES, body=ActionRequest,
     response=TimelineEntryOut, status=201, tags=["cases"], errors=_CASE_ERRORS)
@speaks_cases
async def add_action(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, ActionRequest)
    access = await _access(request)
    access.require_work()
    entry = await _cases(request).add_action(_reference(request), form.kind,
                                             access.session.username, form.note)
    return json_response(_entry(entry), status=201)


def _entry(entry: Any) -> TimelineEntryOut:
    return TimelineEntryOut(at=entry.at, actor=entry.actor, kind=entry.kind, what=entry.what,
                            text=entry.text)


@api("Name a harasser by the number she gave: it goes to the vault; the answer is his "
     "token and how many complaints name him", roles=ALL_ROLES, body=HarasserRequest,
     response=HarasserOut, status=201, tags=["cases"], errors=_CASE_ERRORS)
@speaks_cases
async def name_harasser(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, HarasserRequest)
    access = await _access(request)
    access.require_work()
    harasser = await _cases(request).name_harasser(_reference(request), form.number,
                                                   access.session.username)
    return json_response(HarasserOut.of(harasser), status=201)


# -- consent and the reveal ---------------------------------------------------------------


@api("Record her consent to share her number (police, a department, family): the agent "
     "on her call, or a supervisor", roles=ALL_ROLES, body=ConsentRequest,
     response=ConsentOut, status=201, tags=["consent"], errors=[*_CASE_ERRORS, 409])
@speaks_cases
async def record_consent(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, ConsentRequest)
    access = await _access(request)
    if not access.speaks_for_her:
        raise forbidden("Consent is recorded by the agent she spoke to, or a supervisor.")
    identity = _caller_identity_of(access)
    record = await _consent(request).record_consent(
        identity, form.scope, recorded_by=access.session.username,
        department=form.department, case_id=access.view.summary.id,
    )
    return json_response(ConsentOut.of(record), status=201)


@api("Withdraw a consent she gave: the agent on her call, or a supervisor",
     roles=ALL_ROLES, response=ConsentOut, tags=["consent"], errors=_CASE_ERRORS)
@speaks_cases
async def withdraw_consent(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    access = await _access(request)
    if not access.speaks_for_her:
        raise forbidden("Consent is withdrawn by the agent she spoke to, or a supervisor.")
    identity = _caller_identity_of(access)
    consent_id = int(request.match_info["consent_id"])
    service = _consent(request)
    # Only a consent of this case's caller: an id from another case is not found here.
    if not any(c.id == consent_id for c in await service.consents_for(identity)):
        raise WebError(404, "consent_not_found", "No such consent on this case.")
    record = await service.withdraw_consent(consent_id, withdrawn_by=access.session.username)
    return json_response(ConsentOut.of(record))


@api("Reveal the caller's number: a supervisor, under her consent for the purpose or an "
     "emergency override with a written reason. Every attempt is audited, refusals "
     "included (403 consent_required without consent)", roles=ALL_ROLES,
     body=RevealRequest, response=RevealOut, tags=["consent"], errors=[*_CASE_ERRORS, 409])
@speaks_cases
async def reveal(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, RevealRequest)
    session = session_of(request)
    view = await _cases(request).get_by_reference(_reference(request))
    identity = view.summary.caller_identity_id
    if identity is None:
        raise WebError(409, "nothing_to_reveal", "This case has no caller identity.")
    # The service decides (role, consent, override) and audits before it answers.
    number = await _consent(request).reveal(
        identity, session.username, session.role, form.purpose, form.override_reason,
        department=form.department,
    )
    response = json_response(
        RevealOut(
            reference=view.summary.reference,
            caller_token=view.summary.caller_token,
            number=number.e164,
            purpose=form.purpose,
            department=form.department,
            basis="override" if form.override_reason is not None else "consent",
        )
    )
    # Never kept by a browser or a proxy: the next person at this desk is not her.
    response.headers["Cache-Control"] = "no-store, private"
    response.headers["Pragma"] = "no-cache"
    return response


# -- callers and the audit log ------------------------------------------------------------


@api("Block an abusive caller for some days (at most 90) with a reason; audited",
     roles=DECIDES, body=BlockRequest, response=BlockOut, status=201, tags=["callers"],
     errors=[404, 409])
@speaks_cases
async def block_caller(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, BlockRequest)
    session = session_of(request)
    token = request.match_info["token"].strip().upper()
    identity = await _caller_by_token(request, token)
    block = await _cases(request).block_caller(
        identity, reason=form.reason, blocked_by=session.username,
        period=timedelta(days=form.days),
    )
    return json_response(
        BlockOut(id=block.id, token=token, reason=block.reason, blocked_by=block.blocked_by,
                 blocked_at=block.blocked_at, expires_at=block.expires_at),
        status=201,
    )


@api("Verify the audit log's hash chain and anchor", roles=ADMIN, response=AuditVerifyOut,
     tags=["audit"])
@speaks_cases
async def verify_audit(request: web.Request) -> web.StreamResponse:
    verdict = await _audit(request).verify()
    return json_response(
        AuditVerifyOut(
            ok=verdict.ok,
            checked=verdict.checked,
            head_seq=verdict.head_seq,
            first_bad_seq=verdict.problems[0].seq if verdict.problems else None,
            anchor_signed=verdict.anchor_signed,
            problems=[AuditProblemOut(seq=p.seq, code=p.code, message=p.message)
                      for p in verdict.problems],
        )
    )


ROUTES: Mapping[tuple[str, str], Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
    ("GET", "/api/cases"): search_cases,
    # Before /api/cases/{reference}, which would otherwise take "export.csv".
    ("GET", "/api/cases/export.csv"): export_cases,
    ("GET", "/api/cases/{reference}"): get_case,
    ("PATCH", "/api/cases/{reference}"): update_case,
    ("POST", "/api/cases/{reference}/notes"): add_note,
    ("POST", "/api/cases/{reference}/actions"): add_action,
    ("POST", "/api/cases/{reference}/harassers"): name_harasser,
    ("POST", "/api/cases/{reference}/consent"): record_consent,
    ("DELETE", r"/api/cases/{reference}/consent/{consent_id:\d{1,18}}"): withdraw_consent,
    ("POST", "/api/cases/{reference}/reveal"): reveal,
    ("POST", "/api/callers/{token}/block"): block_caller,
    ("GET", "/api/audit/verify"): verify_audit,
}


def add_routes(app: web.Application) -> None:
    for (method, path), handler in ROUTES.items():
        app.router.add_route(method, path, handler)
