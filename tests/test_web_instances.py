"""Two backend instances behind one (imagined) load balancer, sharing one real Redis:
sessions, rate limits, screen-pops and wallboard data cross from one to the other."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from callcenter.agents.views import ScreenPop
from callcenter.bus import RedisBus
from callcenter.store import Store
from tests.support.web import (
    PASSWORD,
    MemoryAgentDirectory,
    StatsStub,
    add_staff,
    card,
    cheap_accounts,
    receive_until,
    serve,
    web_options,
)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'web.sqlite3'}")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_pop_on_a_reaches_console_on_b_and_session_is_shared(
    sqlite_store: Store, redis_url: str, redis_prefix: str, redis_client: Any
) -> None:
    accounts = cheap_accounts(sqlite_store)
    follows_pbx = MemoryAgentDirectory()  # instance A follows the PBX
    await add_staff(accounts, follows_pbx)
    serves_web_only = MemoryAgentDirectory()  # instance B knows agents only from the bus
    stats = StatsStub({"up-east": {"node": "up-east", "queues": [{"queue": "q", "waiting": 3}],
                                   "abandoned_calls": []}})
    options = web_options(redis_prefix=redis_prefix, login_limit_per_address=100)

    async with (
        RedisBus(redis_url, prefix=redis_prefix) as bus_a,
        RedisBus(redis_url, prefix=redis_prefix) as bus_b,
        serve(store=sqlite_store, bus=bus_a, accounts=accounts, directory=follows_pbx,
              redis=redis_client, options=options, stats=stats) as a,
        serve(store=sqlite_store, bus=bus_b, accounts=accounts, directory=serves_web_only,
              redis=redis_client, options=options) as b,
        # One browser: cookies are per host, not per port, as behind a balancer.
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser,
    ):
        signed_in = await browser.post(
            f"{a.origin}/api/session", json={"username": "asha", "password": PASSWORD}
        )
        assert signed_in.status == 200
        csrf = (await signed_in.json())["csrf_token"]
        on_b = await browser.get(f"{b.origin}/api/session")
        assert on_b.status == 200
        assert (await on_b.json())["username"] == "asha"

        console = await browser.ws_connect(f"{b.origin}/ws/console", origin=b.origin)
        await receive_until(console, lambda m: m["type"] == "hello")

        follows_pbx.pop(ScreenPop(username="asha", phase="ringing", card=card("9.9")))
        pop, _ = await receive_until(console, lambda m: m["type"] == "pop")
        assert pop["pop"]["card"]["linkedid"] == "9.9"

        # Her state changed on A shows on B's console too.
        view = follows_pbx.view("asha")
        assert view is not None
        follows_pbx.set_view(replace(view, state="ringing", call=card("9.9")))
        update, _ = await receive_until(
            console, lambda m: m["type"] == "agent" and m["agent"] is not None
            and m["agent"]["state"] == "ringing"
        )
        assert update["agent"]["call"]["caller"] == "T-7KQ2M9"
        await console.close()

        # Signing out on B ends the session on A as well.
        signed_out = await browser.delete(f"{b.origin}/api/session",
                                          headers={"X-CSRF-Token": csrf})
        assert signed_out.status == 204
        assert (await browser.get(f"{a.origin}/api/session")).status == 401


async def test_wallboard_on_b_shows_queues_and_agents_of_a(
    sqlite_store: Store, redis_url: str, redis_prefix: str, redis_client: Any
) -> None:
    accounts = cheap_accounts(sqlite_store)
    follows_pbx = MemoryAgentDirectory()
    await add_staff(accounts, follows_pbx)
    stats = StatsStub({"up-east": {"node": "up-east", "queues": [{"queue": "q", "waiting": 3}],
                                   "abandoned_calls": []}})
    options = web_options(redis_prefix=redis_prefix, login_limit_per_address=100)
    async with (
        RedisBus(redis_url, prefix=redis_prefix) as bus_a,
        RedisBus(redis_url, prefix=redis_prefix) as bus_b,
        serve(store=sqlite_store, bus=bus_a, accounts=accounts, directory=follows_pbx,
              redis=redis_client, options=options, stats=stats),
        serve(store=sqlite_store, bus=bus_b, accounts=accounts,
              directory=MemoryAgentDirectory(), redis=redis_client, options=options) as b,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser,
    ):
        response = await browser.post(
            f"{b.origin}/api/session", json={"username": "deepa", "password": PASSWORD}
        )
        assert response.status == 200
        wallboard = await browser.ws_connect(f"{b.origin}/ws/wallboard", origin=b.origin)
        message, _ = await receive_until(
            wallboard, lambda m: m["type"] == "wallboard" and m["queues"] != []
        )
        assert message["queues"][0]["queues"][0]["waiting"] == 3

        view = follows_pbx.view("chitra")
        assert view is not None
        follows_pbx.set_view(replace(view, state="paused", reason="recovery"))
        message, _ = await receive_until(
            wallboard, lambda m: m["type"] == "wallboard"
            and any(a["username"] == "chitra" for a in m["agents"])
        )
        [chitra] = [a for a in message["agents"] if a["username"] == "chitra"]
        assert chitra["reason"] == "recovery"
        await wallboard.close()

        queues = await (await browser.get(f"{b.origin}/api/queues")).json()
        assert [n["node"] for n in queues["nodes"]] == ["up-east"]


async def test_rate_limit_is_shared_by_instances(
    sqlite_store: Store, redis_url: str, redis_prefix: str, redis_client: Any
) -> None:
    accounts = cheap_accounts(sqlite_store)
    await add_staff(accounts, None)
    options = web_options(redis_prefix=redis_prefix, login_limit_per_user=2)
    async with (
        RedisBus(redis_url, prefix=redis_prefix) as bus_a,
        RedisBus(redis_url, prefix=redis_prefix) as bus_b,
        serve(store=sqlite_store, bus=bus_a, accounts=accounts,
              directory=MemoryAgentDirectory(), redis=redis_client, options=options) as a,
        serve(store=sqlite_store, bus=bus_b, accounts=accounts,
              directory=MemoryAgentDirectory(), redis=redis_client, options=options) as b,
        aiohttp.ClientSession() as browser,
    ):
        statuses = []
        for origin in (a.origin, b.origin, a.origin, b.origin):
            response = await browser.post(
                f"{origin}/api/session", json={"username": "bela", "password": "guess-guess"}
            )
            statuses.append(response.status)
            if response.status == 429:
                assert int(response.headers["Retry-After"]) >= 1
        assert statuses == [401, 401, 429, 429]
        keys = [k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")]
        # Neither the username nor the address is spelled out in Redis.
        assert keys and not any(b"bela" in k or b"127.0.0.1" in k for k in keys)
        assert json.dumps([k.decode() for k in keys]).count("ratelimit") == len(keys)
