"""Transfer and supervision routes: thin handlers over the agents' transfer services.

- an agent (or counsellor) transfers *her own* call: the signed-in username is the
  transferring agent, never a field of the request;
- supervisors listen / whisper / barge from the wallboard, on their own softphone.

``WebDeps.transfers`` holds a :class:`TransferDeps`. Refusals of the services carry a stable
code (``no_call``, ``unknown_destination``, ``transfer_in_progress``, ``no_consultation``,
``pbx_refused``, ``agent_not_on_call``, ...) and a message she can act on.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from callcenter.agents.errors import AgentError
from callcenter.agents.supervision import (
    AgentNotOnCall,
    AlreadySupervising,
    NoSession,
    NotASupervisor,
    SupervisionService,
    SupervisionSession,
    UnknownMode,
)
from callcenter.agents.transfers import (
    Destination,
    Handover,
    NoCallToTransfer,
    NoConsultation,
    PbxRefused,
    TransferInProgress,
    TransferService,
    UnknownDestination,
)
from callcenter.cases.errors import CaseError

from .auth import session_of
from .body import json_response, read_body, read_empty
from .errors import WebError
from .keys import DEPS
from .openapi import ALL_ROLES, SUPERVISORS, api

CALL_TAKERS = frozenset({"agent", "counsellor", "supervisor"})


class Transfers(Protocol):
    """What the routes need: :class:`TransferService`, or ``OwnerRoutedTransfers`` on an
    instance that may not own the PBX."""

    def destinations(self) -> tuple[Destination, ...]: ...

    async def blind(self, username: str, destination: str, *, category: str | None = ...,
                    note: str = ...) -> Handover: ...

    async def warm(self, username: str, destination: str, *, category: str | None = ...,
                   note: str = ...) -> Handover: ...

    async def conference(self, username: str, destination: str, *,
                         category: str | None = ..., note: str = ...) -> Handover: ...

    async def complete(self, username: str) -> None: ...

    async def cancel(self, username: str) -> None: ...


class Supervision(Protocol):
    async def start(self, supervisor: str, agent: str, mode: str) -> SupervisionSession: ...

    async def switch(self, supervisor: str, mode: str) -> SupervisionSession: ...

    async def stop(self, supervisor: str) -> None: ...

    def session_of(self, supervisor: str) -> SupervisionSession | None: ...


@dataclass(frozen=True, slots=True)
class TransferDeps:
    transfers: TransferService | Transfers
    supervision: SupervisionService | Supervision | None = None


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    #: A configured destination key, or ``agent:PJSIP/<endpoint>`` for a named counsellor.
    destination: str = Field(min_length=1, max_length=96)
    kind: str = Field(default="blind", pattern="^(blind|warm|conference)$")
    category: str | None = Field(default=None, max_length=64)
    note: str = Field(default="", max_length=1000)


class SuperviseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    agent: str = Field(min_length=1, max_length=64)
    mode: str = Field(pattern="^(listen|whisper|barge)$")


class ModeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    mode: str = Field(pattern="^(listen|whisper|barge)$")


_STATUS: Mapping[type[AgentError], int] = {
    NoCallToTransfer: 409, TransferInProgress: 409, NoConsultation: 409,
    UnknownDestination: 422, PbxRefused: 502, AgentNotOnCall: 409,
    AlreadySupervising: 409, NoSession: 409, NotASupervisor: 403, UnknownMode: 422,
}


def _refused(exc: AgentError) -> WebError:
    status = next((s for kind, s in _STATUS.items() if isinstance(exc, kind)), 409)
    return WebError(status, exc.code, f"{exc}.")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _speaks_transfers(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AgentError as exc:
            raise _refused(exc) from None
        except CaseError as exc:  # a note the scrubber refused, the audit log refusing a row
            raise WebError(422 if isinstance(exc, ValueError) else 500, exc.code,
                           f"{exc}.") from None

    return wrapped


def _deps(request: web.Request) -> TransferDeps:
    deps = request.app[DEPS].transfers
    assert isinstance(deps, TransferDeps)
    return deps


def _supervision(request: web.Request) -> SupervisionService | Supervision:
    service = _deps(request).supervision
    if service is None:
        raise WebError(404, "supervision_off", "Supervision is not configured here.")
    return service


def _session_out(session: SupervisionSession) -> dict[str, Any]:
    return {"agent": session.agent, "mode": session.mode, "connected": session.spying,
            "call": session.linkedid}


@api("Where calls can be transferred", roles=ALL_ROLES, tags=["transfers"])
async def list_destinations(request: web.Request) -> web.StreamResponse:
    destinations = _deps(request).transfers.destinations()
    return json_response({"destinations": [
        {"key": d.key, "label": d.label, "kind": d.kind} for d in destinations
    ]})


@api("Transfer her own call: blind, warm (consult first) or a three-way conference; the "
     "next agent's screen-pop carries the case so far", roles=CALL_TAKERS,
     body=TransferRequest, status=202, tags=["transfers"], errors=[409, 422, 502])
@_speaks_transfers
async def transfer(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, TransferRequest)
    username = session_of(request).username
    service = _deps(request).transfers
    start = {"blind": service.blind, "warm": service.warm,
             "conference": service.conference}[form.kind]
    handover = await start(username, form.destination, category=form.category,
                           note=form.note)
    return json_response({"kind": form.kind, "handover": asdict(handover)}, status=202)


@api("Complete her warm transfer: the caller stays with the consulted party",
     roles=CALL_TAKERS, tags=["transfers"], errors=[409, 502])
@_speaks_transfers
async def complete(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    await _deps(request).transfers.complete(session_of(request).username)
    return json_response({"state": "completed"})


@api("Cancel her warm transfer: back with the caller", roles=CALL_TAKERS,
     tags=["transfers"], errors=[409, 502])
@_speaks_transfers
async def cancel(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    await _deps(request).transfers.cancel(session_of(request).username)
    return json_response({"state": "cancelled"})


@api("Listen to, whisper to or barge into an agent's call: your own softphone rings; "
     "audited", roles=SUPERVISORS, body=SuperviseRequest, status=202,
     tags=["supervision"], errors=[403, 409, 422, 502])
@_speaks_transfers
async def supervise(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, SuperviseRequest)
    session = await _supervision(request).start(
        session_of(request).username, form.agent, form.mode
    )
    return json_response(_session_out(session), status=202)


@api("Switch your supervision mode during the call; audited", roles=SUPERVISORS,
     body=ModeRequest, tags=["supervision"], errors=[409, 422, 502])
@_speaks_transfers
async def switch_mode(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, ModeRequest)
    session = await _supervision(request).switch(session_of(request).username, form.mode)
    return json_response(_session_out(session))


@api("End your supervision session; audited", roles=SUPERVISORS, tags=["supervision"],
     errors=[409])
@_speaks_transfers
async def end_supervision(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    await _supervision(request).stop(session_of(request).username)
    return json_response({"state": "ended"})


@api("Your supervision session, if any", roles=SUPERVISORS, tags=["supervision"])
async def my_supervision(request: web.Request) -> web.StreamResponse:
    session = _supervision(request).session_of(session_of(request).username)
    return json_response({"session": None if session is None else _session_out(session)})


ROUTES: Mapping[tuple[str, str], Handler] = {
    ("GET", "/api/transfers/destinations"): list_destinations,
    ("POST", "/api/me/transfer"): transfer,
    ("POST", "/api/me/transfer/complete"): complete,
    ("POST", "/api/me/transfer/cancel"): cancel,
    ("GET", "/api/supervision"): my_supervision,
    ("POST", "/api/supervision"): supervise,
    ("PUT", "/api/supervision/mode"): switch_mode,
    ("DELETE", "/api/supervision"): end_supervision,
}


def add_routes(app: web.Application) -> None:
    for (method, path), handler in ROUTES.items():
        app.router.add_route(method, path, handler)
