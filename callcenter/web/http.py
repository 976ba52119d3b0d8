"""The REST API, health, metrics and pages: thin handlers over the services.

Each handler parses, calls one service, and shapes the answer; who may call it is in its
``@api`` declaration and enforced by :mod:`callcenter.web.auth`.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import asdict
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from callcenter.agents.views import AgentView

from .auth import SESSION, session_of
from .body import json_response, read_body, read_empty
from .deps import WebDeps
from .errors import WebError, forbidden, not_found
from .keys import DEPS, FANOUT, METRICS, OPTIONS
from .metrics import update_metrics
from .openapi import ALL_ROLES, SUPERVISORS, api, build_openapi
from .schemas import (
    WRAPUP_CATEGORIES,
    WRAPUP_SUGGESTED,
    AbandonedResponse,
    AgentList,
    AgentResponse,
    CallList,
    CallRecordOut,
    Health,
    MeResponse,
    PauseRequest,
    QueuesResponse,
    WrapUpRequest,
)

log = logging.getLogger(__name__)

RECENT_CALLS = 20
#: Roles that see every call and every agent; the others see their own.
SEES_ALL = SUPERVISORS


def _agent(view: AgentView) -> dict[str, Any]:
    return {"agent": asdict(view)}


def served_features(deps: WebDeps) -> list[str]:
    """The optional domains whose collaborators are present (see web.app.EXTRA_ROUTES)."""
    from .app import EXTRA_ROUTES

    return [name for _module, name in EXTRA_ROUTES if getattr(deps, name) is not None]


# -- her own console -------------------------------------------------------------------


@api("Her state and what the console offers", roles=ALL_ROLES, response=MeResponse,
     tags=["me"])
async def me(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    agents = request.app[DEPS].agents
    return json_response(
        {
            "agent": request.app[FANOUT].agent_view(session.username),
            "pause_reasons": list(agents.pause_reasons()),
            "wrapup_categories": list(WRAPUP_CATEGORIES),
            "wrapup_suggestions": WRAPUP_SUGGESTED,
            "features": served_features(request.app[DEPS]),
        }
    )


@api("Go available: join her queues", roles=ALL_ROLES, response=AgentResponse,
     tags=["me"], errors=[404, 409])
async def login_queues(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    view = await request.app[DEPS].agents.login(session_of(request).username)
    return json_response(_agent(view))


@api("Leave her queues", roles=ALL_ROLES, response=AgentResponse, tags=["me"],
     errors=[404, 409])
async def logout_queues(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    view = await request.app[DEPS].agents.logout(session_of(request).username)
    return json_response(_agent(view))


@api("Pause with a reason", roles=ALL_ROLES, body=PauseRequest, response=AgentResponse,
     tags=["me"], errors=[404, 409])
async def pause(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, PauseRequest)
    view = await request.app[DEPS].agents.pause(session_of(request).username, form.reason)
    return json_response(_agent(view))


@api("End her pause", roles=ALL_ROLES, response=AgentResponse, tags=["me"],
     errors=[404, 409])
async def unpause(request: web.Request) -> web.StreamResponse:
    await read_empty(request)
    view = await request.app[DEPS].agents.unpause(session_of(request).username)
    return json_response(_agent(view))


@api("Hand in the wrap-up form and end wrap-up", roles=ALL_ROLES, body=WrapUpRequest,
     response=AgentResponse, tags=["me"], errors=[404, 409])
async def wrapup(request: web.Request) -> web.StreamResponse:
    form = await read_body(request, WrapUpRequest)
    username = session_of(request).username
    deps = request.app[DEPS]
    # The form first: if writing it fails she is still in wrap-up and can send it again.
    await deps.wrapup_sink(username, form)
    view = await deps.agents.wrap_up_done(username)
    return json_response(_agent(view))


@api("Her recent calls, newest first", roles=ALL_ROLES, response=CallList, tags=["me"])
async def my_calls(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    records = await request.app[DEPS].calls.recent_for_agent(session.endpoint, RECENT_CALLS)
    return json_response(CallList(calls=[CallRecordOut.of(r) for r in records]))


# -- supervisors -------------------------------------------------------------------------


@api("Every agent's state", roles=SUPERVISORS, response=AgentList, tags=["supervisor"])
async def agents(request: web.Request) -> web.StreamResponse:
    return json_response({"agents": request.app[FANOUT].agent_views()})


@api("Queue statistics of every PBX node", roles=SUPERVISORS, response=QueuesResponse,
     tags=["supervisor"])
async def queues(request: web.Request) -> web.StreamResponse:
    return json_response({"nodes": request.app[FANOUT].queue_snapshots()})


@api("Today's abandoned calls, newest first (tokens only)", roles=SUPERVISORS,
     response=AbandonedResponse, tags=["supervisor"])
async def abandoned(request: web.Request) -> web.StreamResponse:
    return json_response({"calls": request.app[FANOUT].abandoned()})


@api("One call; an agent sees only calls she took", roles=ALL_ROLES,
     response=CallRecordOut, tags=["calls"], errors=[404])
async def call(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    node = request.match_info["node"]
    linkedid = request.match_info["linkedid"]
    record = await request.app[DEPS].calls.get(node, linkedid)
    if record is None:
        raise not_found("No call with that node and id.")
    if session.role not in SEES_ALL and record.agent_interface != session.endpoint:
        raise forbidden("This call was taken by someone else; ask a supervisor.")
    return json_response(CallRecordOut.of(record))


# -- operations --------------------------------------------------------------------------


@api("Liveness and readiness (database, PBX links)", roles=None, response=Health,
     tags=["operations"], errors=[503])
async def healthz(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    database = "not_configured"
    if deps.store is not None:
        try:
            async with deps.store.session() as session:
                await session.execute(text("SELECT 1"))
            database = "ok"
        except Exception as exc:  # any failure means "not ready", whatever the driver
            log.warning("health: database unreachable (%s)", type(exc).__name__)
            database = "unreachable"
    ready = database != "unreachable"
    health = Health(live=True, ready=ready, database=database, pbx=dict(deps.pbx_links()))
    return json_response(health, status=200 if ready else 503)


@api("Prometheus metrics", roles=None, tags=["operations"],
     content_type="text/plain; version=0.0.4")
async def metrics(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    token = request.app[OPTIONS].metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise WebError(401, "metrics_token_required",
                           "Metrics need the scrape token (Authorization: Bearer ...).",
                           headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    update_metrics(
        request.app[METRICS],
        snapshots=deps.stats(),
        views=deps.agents.views(),
        ami_lag=deps.ami_lag(),
    )
    body = generate_latest(deps.registry)
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@api("This document", roles=None, tags=["operations"])
async def openapi(request: web.Request) -> web.StreamResponse:
    document = build_openapi(
        request.app.router,
        title="callcenter (1090 helpline)",
        version="1",
        cookie_name=request.app[OPTIONS].cookie_name,
    )
    return json_response(document)


# -- pages -------------------------------------------------------------------------------


def _page(name: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        session = request.get(SESSION)
        if name != "login" and session is None:
            raise web.HTTPFound("/login")
        if name == "wallboard" and session is not None and session.role not in SEES_ALL:
            raise WebError(403, "forbidden", "The wallboard is for supervisors.")
        return web.FileResponse(request.app[OPTIONS].static_dir / f"{name}.html")

    handler.__name__ = f"{name}_page"
    return api(f"The {name} page", roles=None, tags=["pages"], content_type="text/html")(
        handler
    )


async def _home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console")


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/api/me", me, allow_head=False)
    router.add_post("/api/me/login-queues", login_queues)
    router.add_post("/api/me/logout", logout_queues)
    router.add_post("/api/me/pause", pause)
    router.add_post("/api/me/unpause", unpause)
    router.add_post("/api/me/wrapup", wrapup)
    router.add_get("/api/me/calls", my_calls, allow_head=False)
    router.add_get("/api/agents", agents, allow_head=False)
    router.add_get("/api/queues", queues, allow_head=False)
    router.add_get("/api/abandoned", abandoned, allow_head=False)
    router.add_get("/api/calls/{node}/{linkedid}", call, allow_head=False)
    router.add_get("/api/openapi.json", openapi, allow_head=False)
    router.add_get("/healthz", healthz, allow_head=False)
    router.add_get("/metrics", metrics, allow_head=False)
    for name in ("login", "console", "wallboard"):
        router.add_get(f"/{name}", _page(name), allow_head=False)
    router.add_get("/", api("Home: the console", roles=None, tags=["pages"],
                            content_type="text/html")(_home), allow_head=False)
