"""Sign-in, sign-out, who-am-I, and the middlewares that enforce sessions, CSRF and roles.

Who may call a route is declared next to the handler (``@api(roles=...)``) and enforced
here for every request, so a new route cannot forget its check: a route declared public
says so in the OpenAPI document too.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from callcenter.agents.errors import AgentError

from .body import json_response, read_body
from .errors import WebError, forbidden, from_agent_error, from_http_exception, unauthenticated
from .keys import ADDRESS_LIMIT, DEPS, METRICS, OPTIONS, SESSIONS, USER_LIMIT
from .openapi import ALL_ROLES, api, spec_of
from .schemas import LoginRequest, SessionInfo
from .security import (
    UNSAFE_METHODS,
    apply_security_headers,
    check_csrf,
    client_address,
    too_many_attempts,
)
from .sessions import Session

log = logging.getLogger(__name__)

SESSION = web.RequestKey["Session | None"]("session")


def session_of(request: web.Request) -> Session:
    """The signed-in session; only for routes the middleware already required it on."""
    session = request.get(SESSION)
    if session is None:
        raise unauthenticated()
    return session


async def _load_session(request: web.Request) -> Session | None:
    session_id = request.cookies.get(request.app[OPTIONS].cookie_name)
    if not session_id or len(session_id) > 128:
        return None
    return await request.app[SESSIONS].get(session_id)


def error_response(error: WebError) -> web.Response:
    response = json_response(error.body(), status=error.status)
    response.headers.update(error.headers)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except WebError as exc:
        return error_response(exc)
    except AgentError as exc:
        return error_response(from_agent_error(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects
        return error_response(from_http_exception(exc))
    except asyncio.CancelledError:
        raise
    except Exception:
        # The route, never the body or the query: either may carry a case's details.
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "(unrouted)"
        log.exception("unhandled error in %s %s", request.method, route)
        return error_response(
            WebError(500, "internal_error", "Something went wrong on our side; try again.")
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    session = await _load_session(request)
    request[SESSION] = session
    spec = spec_of(request.match_info.handler)
    csrf_required = spec is None or spec.csrf
    if request.method in UNSAFE_METHODS and csrf_required and session is not None:
        check_csrf(session.csrf_token, request)
    if spec is not None and spec.roles is not None:
        if session is None:
            raise unauthenticated()
        if session.role not in spec.roles:
            raise forbidden()
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, static files and WebSocket upgrades included."""
    apply_security_headers(response)


# -- handlers ----------------------------------------------------------------------


def _session_info(session: Session) -> SessionInfo:
    return SessionInfo(
        username=session.username,
        display_name=session.display_name,
        role=session.role,
        endpoint=session.endpoint,
        csrf_token=session.csrf_token,
        expires_at=session.expires_at,
    )


def _set_cookie(response: web.StreamResponse, request: web.Request, session: Session) -> None:
    options = request.app[OPTIONS]
    response.set_cookie(
        options.cookie_name,
        session.id,
        path="/",
        httponly=True,
        secure=options.cookie_secure,
        samesite="Strict",
        max_age=int(options.session_ttl),
    )


def _clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    options = request.app[OPTIONS]
    response.del_cookie(
        options.cookie_name,
        path="/",
        secure=options.cookie_secure,
        httponly=True,
        samesite="Strict",
    )


@api(
    "Sign in with username and password",
    roles=None,
    body=LoginRequest,
    response=SessionInfo,
    tags=["session"],
    errors=[401, 429],
    csrf=False,
)
async def login(request: web.Request) -> web.StreamResponse:
    app = request.app
    form = await read_body(request, LoginRequest)
    metrics = app[METRICS]
    address = client_address(request, trust_forwarded=app[OPTIONS].trust_forwarded_for)
    username_key = form.username.strip().lower()
    waits = (await app[USER_LIMIT].hit(username_key), await app[ADDRESS_LIMIT].hit(address))
    if max(waits) > 0:
        metrics.logins.labels("rate_limited").inc()
        raise too_many_attempts(max(waits))
    account = await app[DEPS].accounts.verify_password(form.username, form.password)
    if account is None:
        metrics.logins.labels("refused").inc()
        # One answer for unknown user, wrong password and disabled account alike.
        raise WebError(
            401,
            "invalid_credentials",
            "Wrong username or password, or the account is disabled. "
            "Check both and try again; a supervisor can reset a forgotten password.",
        )
    await app[USER_LIMIT].reset(username_key)
    sessions = app[SESSIONS]
    # A new id at every sign-in: an id planted in her browser before never becomes hers.
    previous = request.cookies.get(app[OPTIONS].cookie_name)
    if previous:
        await sessions.delete(previous)
    session = await sessions.create(
        username=account.username,
        display_name=account.display_name,
        role=account.role.value,
        endpoint=account.endpoint,
    )
    metrics.logins.labels("ok").inc()
    log.info("web sign-in: %s (%s)", account.username, account.role.value)
    response = json_response(_session_info(session))
    _set_cookie(response, request, session)
    return response


@api("Who is signed in, with the CSRF token", roles=ALL_ROLES, response=SessionInfo,
     tags=["session"])
async def whoami(request: web.Request) -> web.StreamResponse:
    return json_response(_session_info(session_of(request)))


@api("Sign out", roles=ALL_ROLES, status=204, tags=["session"])
async def logout(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    await request.app[SESSIONS].delete(session.id)
    response = web.Response(status=204)
    _clear_cookie(response, request)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/session", login)
    app.router.add_get("/api/session", whoami, allow_head=False)
    app.router.add_delete("/api/session", logout)
