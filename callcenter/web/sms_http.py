"""SMS routes: text a caller from her case (with her consent), read a text's status, and
Twilio's delivery status callback.

The callback is the one route Twilio calls, so it has no session and no CSRF token: it is
authenticated by X-Twilio-Signature, an HMAC of the exact URL Twilio requested and the
form it posted. Behind a proxy the URL we see is not that URL, so it is rebuilt from
``sms.public_base_url`` (or, when told to trust them, the X-Forwarded-* headers). The
callback's form carries her number in ``To``: it is read, never logged nor stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from callcenter.cases.errors import CaseError
from callcenter.followups.sms import (
    CALLBACK_MESSAGE_PARAM,
    SmsConsentMissing,
    SmsError,
    SmsInvalid,
    SmsNotConfigured,
    SmsNotFound,
    SmsService,
    SmsView,
)
from callcenter.pbx.models import CallRecord

from .auth import session_of
from .body import json_response, read_body
from .cases_http import CaseAccess, web_error
from .errors import WebError, forbidden
from .keys import DEPS
from .openapi import ALL_ROLES, SUPERVISORS, api

log = logging.getLogger(__name__)


class SmsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str = Field(min_length=1, max_length=48)
    variables: dict[str, str] = Field(default_factory=dict)


class SmsStatusOut(BaseModel):
    status: str
    source: str
    at: datetime
    error_code: int | None = None


class SmsOut(BaseModel):
    id: int
    template: str
    dlt_template_id: str
    status: str
    twilio_sid: str | None
    error_code: int | None
    requested_by: str
    requested_at: datetime
    history: list[SmsStatusOut]

    @classmethod
    def of(cls, view: SmsView) -> SmsOut:
        return cls(
            id=view.id, template=view.template_key, dlt_template_id=view.dlt_template_id,
            status=view.status, twilio_sid=view.twilio_sid, error_code=view.error_code,
            requested_by=view.requested_by, requested_at=view.requested_at,
            history=[SmsStatusOut(status=h.status, source=h.source, at=h.at,
                                  error_code=h.error_code) for h in view.history],
        )


class SmsTemplateOut(BaseModel):
    key: str
    text: str
    fields: list[str]
    dlt_template_id: str


class SmsTemplateList(BaseModel):
    templates: list[SmsTemplateOut]


def _sms(request: web.Request) -> SmsService:
    return request.app[DEPS].sms  # type: ignore[no-any-return]


def _web_error(exc: SmsError) -> WebError:
    if isinstance(exc, SmsConsentMissing):
        return WebError(403, "consent_required", f"Refused and recorded: {exc}.",
                        details=[{"audit_seq": exc.audit_seq}])
    if isinstance(exc, SmsNotFound):
        return WebError(404, exc.code, f"{exc}.")
    if isinstance(exc, SmsInvalid):
        return WebError(422, exc.code, f"{exc}.")
    if isinstance(exc, SmsNotConfigured):
        return WebError(503, exc.code, "Texting is not set up; tell an admin.")
    log.error("sms: %s (%s)", type(exc).__name__, exc.code)
    return WebError(500, exc.code, "Texting failed on our side; tell an admin.")


async def _case_access(request: web.Request) -> CaseAccess:
    deps = request.app[DEPS]
    if deps.cases is None:
        raise WebError(503, "cases_not_configured", "The case store is not configured.")
    try:
        view = await deps.cases.get_by_reference(request.match_info["reference"])
    except CaseError as exc:
        raise web_error(exc) from None
    calls: list[CallRecord] = []
    if deps.store is not None and view.call_ids:
        async with deps.store.session() as session:
            calls = list(await session.scalars(
                select(CallRecord).where(CallRecord.id.in_(view.call_ids))
            ))
    return CaseAccess(session_of(request), view, calls)


@api("Text the caller of a case from a neutral template; needs her SMS consent (audited)",
     roles=ALL_ROLES, body=SmsRequest, response=SmsOut, status=202, tags=["sms"],
     errors=[404, 409, 422, 503])
async def send_sms(request: web.Request) -> web.StreamResponse:
    access = await _case_access(request)
    access.require_work()
    body = await read_body(request, SmsRequest)
    identity = access.view.summary.caller_identity_id
    if identity is None:
        raise WebError(409, "no_caller_identity", "This case has no caller to text.")
    try:
        view = await _sms(request).request(
            identity, body.template, body.variables,
            requested_by=access.session.username, case_id=access.view.summary.id,
        )
    except SmsError as exc:
        raise _web_error(exc) from None
    return json_response(SmsOut.of(view), status=202)


@api("The neutral SMS templates, with their fields", roles=ALL_ROLES,
     response=SmsTemplateList, tags=["sms"])
async def list_templates(request: web.Request) -> web.StreamResponse:
    templates = _sms(request).settings.templates
    return json_response(SmsTemplateList(templates=[
        SmsTemplateOut(key=key, text=t.text, fields=sorted(t.fields),
                       dlt_template_id=t.dlt_template_id)
        for key, t in sorted(templates.items())
    ]))


@api("One text's status and history (supervisors, or the agent who asked for it)",
     roles=ALL_ROLES, response=SmsOut, tags=["sms"], errors=[404])
async def get_sms(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    try:
        view = await _sms(request).get(int(request.match_info["sms_id"]))
    except SmsError as exc:
        raise _web_error(exc) from None
    if session.role not in SUPERVISORS and view.requested_by != session.username:
        raise forbidden("Only a supervisor or the agent who sent it sees this text.")
    return json_response(SmsOut.of(view))


def public_url(request: web.Request, base: str | None, trust_forwarded: bool) -> str:
    """The URL Twilio requested, which is what its signature covers."""
    # raw_path: the path and query exactly as sent, not re-encoded.
    if base:
        return base.rstrip("/") + request.raw_path
    if trust_forwarded:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if proto and host:
            return f"{proto}://{host}{request.raw_path}"
    return f"{request.scheme}://{request.host}{request.raw_path}"


@api("Twilio's delivery status callback (X-Twilio-Signature checked)", roles=None,
     csrf=False, status=204, tags=["sms"],
     errors=[403, 415, 422])
async def status_callback(request: web.Request) -> web.StreamResponse:
    sms = _sms(request)
    if request.content_type != "application/x-www-form-urlencoded":
        raise WebError(415, "unsupported_media_type", "Twilio posts a form.")
    form: Mapping[str, str] = {k: str(v) for k, v in (await request.post()).items()}
    url = public_url(request, sms.settings.public_base_url, sms.settings.trust_forwarded_headers)
    if not sms.signature_valid(url, form, request.headers.get("X-Twilio-Signature", "")):
        # No details: the form holds her number, and a forger learns nothing.
        raise WebError(403, "signature_invalid", "The request signature does not match.")
    hint = request.query.get(CALLBACK_MESSAGE_PARAM, "")
    error = form.get("ErrorCode", "")
    try:
        view = await sms.apply_callback(
            message_sid=form.get("MessageSid", ""),
            status_text=form.get("MessageStatus", "") or form.get("SmsStatus", ""),
            error_code=int(error) if error.isdigit() else None,
            sms_id=int(hint) if hint.isdigit() and len(hint) < 10 else None,
        )
    except SmsInvalid as exc:
        raise WebError(422, exc.code, "Not a message status callback.") from None
    if view is None:
        # Not ours (another app on the account): answered, so Twilio does not retry.
        log.info("sms status callback for an unknown message")
    return web.Response(status=204)


ROUTES: Mapping[tuple[str, str], Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
    ("POST", "/api/cases/{reference}/sms"): send_sms,
    ("GET", "/api/sms/templates"): list_templates,
    ("GET", r"/api/sms/{sms_id:\d{1,9}}"): get_sms,
    ("POST", "/api/sms/status"): status_callback,
}


def add_routes(app: web.Application) -> None:
    for (method, path), handler in ROUTES.items():
        app.router.add_route(method, path, handler)
