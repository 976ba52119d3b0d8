"""Browser-facing defences: security headers, CSRF, WebSocket origin, sign-in rate limit.

* Every response carries a Content-Security-Policy that allows scripts from this origin
  only (no inline script, so an injected ``<script>`` in a case note cannot run), and
  refuses framing (a wallboard cannot be clickjacked inside another site).
* State-changing requests carry ``X-CSRF-Token``, the session's own token; the session
  cookie is SameSite=Strict too, but a header a cross-site form cannot set is the check
  that does not depend on the browser.
* A WebSocket upgrade is not covered by CORS: a page elsewhere could open one with the
  agent's cookie. Its ``Origin`` must be this host or one of the configured origins.
* Sign-in attempts are limited per username and per client address with a sliding window,
  so guessing one person's password and spraying many accounts are both slow.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from .errors import WebError

Clock = Callable[[], float]

CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), geolocation=(), microphone=()",
}


def apply_security_headers(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # API answers are personal (her calls, her state): never in a shared cache.
    response.headers.setdefault("Cache-Control", "no-store")


def check_csrf(expected: str, request: web.Request) -> None:
    given = request.headers.get(CSRF_HEADER, "")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebError(
            403,
            "csrf_failed",
            f"Missing or wrong {CSRF_HEADER} header; reload the page and try again.",
        )


def check_origin(request: web.Request, allowed: Iterable[str]) -> None:
    """Refuse a WebSocket upgrade whose ``Origin`` is not this site or an allowed one."""
    origin = request.headers.get("Origin")
    if origin:
        normalised = origin.rstrip("/").lower()
        if normalised in {a.rstrip("/").lower() for a in allowed}:
            return
        # Behind a TLS-terminating balancer the scheme we see is not the browser's;
        # the host is what tells this site from another one.
        if urlsplit(normalised).netloc == request.host.lower():
            return
    raise WebError(403, "origin_refused", "This page's origin may not open that socket.")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def client_address(request: web.Request, *, trust_forwarded: bool) -> str:
    """The caller's address; X-Forwarded-For only when the balancer is trusted to set it."""
    if trust_forwarded:
        forwarded = request.headers.get("X-Forwarded-For", "")
        # The balancer appends the address it saw; anything before it is the client's word.
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1]
    return request.remote or "unknown"


# -- sliding-window rate limit ---------------------------------------------------


class RateLimiter(Protocol):
    async def hit(self, key: str) -> float:
        """Count an attempt under ``key``: 0.0 if allowed, else seconds until one is."""
        ...

    async def reset(self, key: str) -> None: ...


def _hashed(key: str) -> str:
    # Usernames and addresses are not secrets, but a limiter's memory need not list them.
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class MemoryRateLimiter:
    """At most ``limit`` attempts per key in any ``window`` seconds, in this process."""

    def __init__(
        self, limit: int, window: float, *, clock: Clock = time.monotonic, max_keys: int = 100_000
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("rate limit needs limit >= 1 and a positive window")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, key: str) -> float:
        now = self._clock()
        name = _hashed(key)
        hits = self._hits.get(name)
        if hits is None:
            if len(self._hits) >= self._max_keys:
                self._sweep(now)
            hits = self._hits[name] = deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(0.001, hits[0] + self.window - now)
        hits.append(now)
        return 0.0

    async def reset(self, key: str) -> None:
        self._hits.pop(_hashed(key), None)

    def _sweep(self, now: float) -> None:
        for name in [n for n, h in self._hits.items() if not h or h[-1] <= now - self.window]:
            del self._hits[name]


class RedisRateLimiter:
    """The same window in Redis (a sorted set per key), shared by every instance."""

    # Atomic: trim the window, count, and add only if under the limit.
    _SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return '0'
"""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str,
        limit: int,
        window: float,
        clock: Clock = time.time,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("rate limit needs limit >= 1 and a positive window")
        self._redis = redis
        self._prefix = f"{prefix}ratelimit:"
        self.limit = limit
        self.window = window
        self._clock = clock
        self._script = redis.register_script(self._SCRIPT)

    async def hit(self, key: str) -> float:
        raw = await self._script(
            keys=[self._prefix + _hashed(key)],
            args=[repr(self._clock()), repr(self.window), self.limit, secrets.token_hex(8)],
        )
        wait = float(raw.decode() if isinstance(raw, bytes) else raw)
        return max(0.001, wait) if wait > 0 else 0.0

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._prefix + _hashed(key))


def too_many_attempts(wait: float) -> WebError:
    seconds = max(1, math.ceil(wait))
    return WebError(
        429,
        "too_many_attempts",
        f"Too many sign-in attempts. Wait {seconds} s and try again, or ask a supervisor "
        "to check your account.",
        headers={"Retry-After": str(seconds)},
    )
