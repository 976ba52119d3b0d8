"""The aiohttp application of the console, the wallboard and the API.

``make_app(deps)`` builds it from collaborators only; the session store, rate limiters,
socket hub and bus fan-out are created in ``cleanup_ctx`` (so they live on the running
loop and are torn down in order) and stored under the typed keys of
:mod:`callcenter.web.keys`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

from aiohttp import web

from . import auth, http, ws
from .deps import WebDeps
from .keys import ADDRESS_LIMIT, DEPS, FANOUT, HUB, METRICS, OPTIONS, SESSIONS, USER_LIMIT
from .security import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from .sessions import MemorySessionStore, RedisSessionStore, SessionStore

#: Modules that add the routes of a domain (each has add_routes(app)), and the WebDeps
#: field holding that domain's collaborator: routes exist only when it is present.
EXTRA_ROUTES: tuple[tuple[str, str], ...] = (
    ("callcenter.web.recordings_http", "recordings"),
    ("callcenter.web.cases_http", "cases"),
    ("callcenter.web.callbacks_http", "callbacks"),
    ("callcenter.web.referrals_http", "referrals"),
    ("callcenter.web.sms_http", "sms"),
    ("callcenter.web.transfers_http", "transfers"),
)


def make_app(deps: WebDeps) -> web.Application:
    options = deps.options
    app = web.Application(
        middlewares=[auth.error_middleware, auth.auth_middleware],
        client_max_size=options.max_body_bytes,
    )
    app[DEPS] = deps
    app[OPTIONS] = options
    assert deps.metrics is not None  # set by WebDeps.__post_init__
    app[METRICS] = deps.metrics
    app.on_response_prepare.append(auth.security_headers)
    app.cleanup_ctx.append(_security_state)
    app.cleanup_ctx.append(_live_feeds)
    auth.add_routes(app)
    http.add_routes(app)
    ws.add_routes(app)
    # Domains whose collaborators are present add their own routes.
    for module, collaborator in EXTRA_ROUTES:
        if getattr(deps, collaborator) is not None:
            importlib.import_module(module).add_routes(app)
    app.router.add_static("/static", options.static_dir, follow_symlinks=False)
    return app


async def _security_state(app: web.Application) -> AsyncIterator[None]:
    deps = app[DEPS]
    options = app[OPTIONS]
    sessions: SessionStore
    user_limit: RateLimiter
    address_limit: RateLimiter
    if deps.redis is not None:
        prefix = options.redis_prefix
        sessions = RedisSessionStore(
            deps.redis, prefix=prefix, ttl=options.session_ttl, idle=options.session_idle
        )
        user_limit = RedisRateLimiter(
            deps.redis, prefix=f"{prefix}login:user:",
            limit=options.login_limit_per_user, window=options.login_window,
        )
        address_limit = RedisRateLimiter(
            deps.redis, prefix=f"{prefix}login:address:",
            limit=options.login_limit_per_address, window=options.login_window,
        )
    else:
        sessions = MemorySessionStore(ttl=options.session_ttl, idle=options.session_idle)
        user_limit = MemoryRateLimiter(options.login_limit_per_user, options.login_window)
        address_limit = MemoryRateLimiter(options.login_limit_per_address, options.login_window)
    app[SESSIONS] = sessions
    app[USER_LIMIT] = user_limit
    app[ADDRESS_LIMIT] = address_limit
    yield


async def _live_feeds(app: web.Application) -> AsyncIterator[None]:
    deps = app[DEPS]
    hub = ws.SocketHub(capacity=app[OPTIONS].socket_queue, metrics=app[METRICS])
    fanout = ws.WebFanout(
        agents=deps.agents, bus=deps.bus, hub=hub, stats=deps.stats, options=app[OPTIONS],
        overdue_referrals=(
            deps.referrals.referrals.overdue_snapshot if deps.referrals is not None else None
        ),
    )
    app[HUB] = hub
    app[FANOUT] = fanout
    await fanout.start()
    try:
        yield
    finally:
        await hub.close()
        await fanout.close()
