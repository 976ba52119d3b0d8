"""Session lifetimes and the sliding-window limiter, on a clock the test moves;
the Redis variants against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from callcenter.web.security import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from callcenter.web.sessions import MemorySessionStore, RedisSessionStore, SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def session_store(request: pytest.FixtureRequest) -> tuple[SessionStore, Clock]:
    clock = Clock()
    if request.param == "memory":
        return MemorySessionStore(ttl=3600, idle=600, clock=clock), clock
    client = request.getfixturevalue("redis_client")
    prefix = request.getfixturevalue("redis_prefix")
    return RedisSessionStore(client, prefix=prefix, ttl=3600, idle=600, clock=clock), clock


async def _new(store: SessionStore) -> str:
    session = await store.create(
        username="asha", display_name="Asha", role="agent", endpoint="PJSIP/agent1001"
    )
    return session.id


async def test_session_idle_timeout_restarts_on_use(
    session_store: tuple[SessionStore, Clock],
) -> None:
    store, clock = session_store
    session_id = await _new(store)
    for _ in range(3):  # used every 9 minutes: stays alive past two idle timeouts
        clock.now += 540
        assert await store.get(session_id) is not None
    clock.now += 601
    assert await store.get(session_id) is None


async def test_session_absolute_lifetime(session_store: tuple[SessionStore, Clock]) -> None:
    store, clock = session_store
    session_id = await _new(store)
    for _ in range(6):
        clock.now += 590
        assert await store.get(session_id) is not None
    clock.now += 590  # 3540 + 590 > 3600, although she was never idle that long
    assert await store.get(session_id) is None


async def test_sessions_are_distinct_and_deletable(
    session_store: tuple[SessionStore, Clock],
) -> None:
    store, _ = session_store
    first, second = await _new(store), await _new(store)
    assert first != second
    one = await store.get(first)
    two = await store.get(second)
    assert one is not None and two is not None and one.csrf_token != two.csrf_token
    await store.delete(first)
    assert await store.get(first) is None
    assert await store.get(second) is not None
    assert await store.get("made-up-id") is None


async def test_redis_keeps_no_session_id(redis_client: Any, redis_prefix: str) -> None:
    store = RedisSessionStore(redis_client, prefix=redis_prefix, ttl=3600, idle=600)
    session_id = await _new(store)
    keys = [k.decode() async for k in redis_client.scan_iter(match=f"{redis_prefix}*")]
    assert len(keys) == 1 and session_id not in keys[0]
    stored = (await redis_client.get(keys[0])).decode()
    assert session_id not in stored
    assert 0 < await redis_client.pttl(keys[0]) <= 600_000


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def limiter(request: pytest.FixtureRequest) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    if request.param == "memory":
        return MemoryRateLimiter(3, 60, clock=clock), clock
    return RedisRateLimiter(
        request.getfixturevalue("redis_client"),
        prefix=request.getfixturevalue("redis_prefix"),
        limit=3, window=60, clock=clock,
    ), clock


async def test_sliding_window(limiter: tuple[RateLimiter, Clock]) -> None:
    rate, clock = limiter
    assert await rate.hit("asha") == 0.0
    clock.now += 20
    assert await rate.hit("asha") == 0.0
    assert await rate.hit("asha") == 0.0
    clock.now += 10
    # The first attempt (30 s ago) leaves the window in 30 s.
    assert await rate.hit("asha") == pytest.approx(30.0)
    assert await rate.hit("bela") == 0.0  # keys are separate
    clock.now += 30
    assert await rate.hit("asha") == 0.0  # a slot freed, not the whole window
    assert await rate.hit("asha") > 0
    await rate.reset("asha")
    assert await rate.hit("asha") == 0.0
