"""Typed application keys: every dependency a handler reaches lives under one of these."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .deps import WebDeps, WebOptions
    from .metrics import WebMetrics
    from .security import RateLimiter
    from .sessions import SessionStore
    from .ws import SocketHub, WebFanout

DEPS: web.AppKey[WebDeps] = web.AppKey("deps")
OPTIONS: web.AppKey[WebOptions] = web.AppKey("options")
METRICS: web.AppKey[WebMetrics] = web.AppKey("metrics")
SESSIONS: web.AppKey[SessionStore] = web.AppKey("sessions")
USER_LIMIT: web.AppKey[RateLimiter] = web.AppKey("login_limit_user")
ADDRESS_LIMIT: web.AppKey[RateLimiter] = web.AppKey("login_limit_address")
HUB: web.AppKey[SocketHub] = web.AppKey("hub")
FANOUT: web.AppKey[WebFanout] = web.AppKey("fanout")
