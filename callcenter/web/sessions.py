"""Signed-in sessions: a random id in a cookie, the rest on the server.

The cookie carries only 256 random bits. The server keeps the session under the SHA-256 of
that id, so a copy of Redis (or a heap dump) does not hold live cookies. A session ends at
the first of: sign-out, its absolute lifetime, or ``idle`` seconds without a request.

Two stores with one interface: :class:`MemorySessionStore` for a single instance, and
:class:`RedisSessionStore`, which every instance behind the load balancer shares, so a
console signed in through instance A keeps working when the next request lands on B.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

Clock = Callable[[], float]

# Writing last_seen on every request would be a Redis write per poll; a minute of slack
# in an idle timeout of many minutes changes nothing a person notices.
_TOUCH_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    username: str
    display_name: str
    role: str
    endpoint: str
    csrf_token: str
    created_at: float
    last_seen: float
    expires_at: float

    def to_json(self) -> str:
        data = asdict(self)
        del data["id"]  # the key is its hash; the id itself is never stored
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, session_id: str, raw: str | bytes) -> Session:
        data: dict[str, Any] = json.loads(raw)
        return cls(id=session_id, **data)


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore(Protocol):
    async def create(
        self, *, username: str, display_name: str, role: str, endpoint: str
    ) -> Session: ...

    async def get(self, session_id: str) -> Session | None:
        """The live session (its idle clock restarted), or None if unknown or expired."""
        ...

    async def delete(self, session_id: str) -> None: ...


class _Lifetimes:
    def __init__(self, *, ttl: float, idle: float, clock: Clock) -> None:
        if ttl <= 0 or idle <= 0:
            raise ValueError("session ttl and idle timeout must be positive")
        self.ttl = ttl
        self.idle = idle
        self.clock = clock

    def new(self, *, username: str, display_name: str, role: str, endpoint: str) -> Session:
        now = self.clock()
        return Session(
            id=secrets.token_urlsafe(32),
            username=username,
            display_name=display_name,
            role=role,
            endpoint=endpoint,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            expires_at=now + self.ttl,
        )

    def alive(self, session: Session, now: float) -> bool:
        return now < session.expires_at and now - session.last_seen < self.idle

    def remaining(self, session: Session, now: float) -> float:
        """Seconds until the session would die if nothing touched it again."""
        return max(0.0, min(session.expires_at - now, session.last_seen + self.idle - now))


class MemorySessionStore(_Lifetimes):
    """Sessions of a single instance; expired ones are swept as new ones are made."""

    def __init__(self, *, ttl: float, idle: float, clock: Clock = time.time) -> None:
        super().__init__(ttl=ttl, idle=idle, clock=clock)
        self._sessions: dict[str, Session] = {}

    async def create(
        self, *, username: str, display_name: str, role: str, endpoint: str
    ) -> Session:
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if not self.alive(s, now)]:
            del self._sessions[key]
        session = self.new(
            username=username, display_name=display_name, role=role, endpoint=endpoint
        )
        self._sessions[_key(session.id)] = session
        return session

    async def get(self, session_id: str) -> Session | None:
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self.clock()
        if not self.alive(session, now):
            del self._sessions[key]
            return None
        if now - session.last_seen >= _TOUCH_EVERY:
            session = self._sessions[key] = replace(session, last_seen=now)
        return session

    async def delete(self, session_id: str) -> None:
        self._sessions.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._sessions)


class RedisSessionStore(_Lifetimes):
    """Sessions in Redis, shared by every instance; Redis expires them by itself."""

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str,
        ttl: float,
        idle: float,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(ttl=ttl, idle=idle, clock=clock)
        self._redis = redis
        self._prefix = f"{prefix}session:"

    def _name(self, session_id: str) -> str:
        return self._prefix + _key(session_id)

    async def _write(self, session: Session, now: float) -> None:
        milliseconds = max(1, int(self.remaining(session, now) * 1000))
        await self._redis.set(self._name(session.id), session.to_json(), px=milliseconds)

    async def create(
        self, *, username: str, display_name: str, role: str, endpoint: str
    ) -> Session:
        session = self.new(
            username=username, display_name=display_name, role=role, endpoint=endpoint
        )
        await self._write(session, session.created_at)
        return session

    async def get(self, session_id: str) -> Session | None:
        raw = await self._redis.get(self._name(session_id))
        if raw is None:
            return None
        try:
            session = Session.from_json(session_id, raw)
        except (ValueError, TypeError):
            # Written by an incompatible version; the person signs in again.
            await self.delete(session_id)
            return None
        now = self.clock()
        if not self.alive(session, now):
            await self.delete(session_id)
            return None
        if now - session.last_seen >= _TOUCH_EVERY:
            session = replace(session, last_seen=now)
            await self._write(session, now)
        return session

    async def delete(self, session_id: str) -> None:
        await self._redis.delete(self._name(session_id))
