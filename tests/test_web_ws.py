"""Console and wallboard WebSockets on one instance: who gets what, pushes, slow sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from callcenter.agents.views import ScreenPop
from callcenter.bus import InProcessBus
from callcenter.store import Store
from callcenter.web.keys import HUB
from tests.support.web import (
    MemoryAgentDirectory,
    StatsStub,
    WebWorld,
    add_staff,
    card,
    cheap_accounts,
    receive_until,
    serve,
    sign_in,
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
def stats() -> StatsStub:
    return StatsStub({"up-east": {"node": "up-east", "queues": [], "abandoned_calls": []}})


@pytest.fixture
async def world(sqlite_store: Store, stats: StatsStub) -> AsyncIterator[WebWorld]:
    accounts = cheap_accounts(sqlite_store)
    directory = MemoryAgentDirectory()
    await add_staff(accounts, directory)
    async with InProcessBus() as bus, serve(
        store=sqlite_store, bus=bus, accounts=accounts, directory=directory, stats=stats,
        options=web_options(socket_queue=8, login_limit_per_address=100),
    ) as world:
        yield world


async def _second_client(world: WebWorld) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=world.origin, cookie_jar=aiohttp.CookieJar(unsafe=True)
    )


async def _sign_in(session: aiohttp.ClientSession, username: str) -> None:
    response = await session.post(
        "/api/session", json={"username": username, "password": "correct horse battery"}
    )
    assert response.status == 200


async def test_console_gets_her_state_and_only_her_pops(world: WebWorld) -> None:
    await sign_in(world.client, "asha")
    other = await _second_client(world)
    try:
        await _sign_in(other, "bela")
        asha = await world.client.ws_connect("/ws/console", origin=world.origin)
        bela = await other.ws_connect("/ws/console", origin=world.origin)
        hello, _ = await receive_until(asha, lambda m: m["type"] == "hello")
        assert hello["agent"]["username"] == "asha"
        assert "break" in hello["pause_reasons"]
        await receive_until(bela, lambda m: m["type"] == "hello")

        world.directory.pop(ScreenPop(username="asha", phase="ringing", card=card()))
        pop, _ = await receive_until(asha, lambda m: m["type"] == "pop")
        assert pop["pop"]["card"]["caller"] == "T-7KQ2M9"
        assert pop["pop"]["card"]["flags"] == ["silent"]
        assert pop["pop"]["phase"] == "ringing"

        # Bela keeps getting her own periodic state, and never Asha's pop.
        marker = world.directory.view("bela")
        assert marker is not None
        world.directory.set_view(replace(marker, state="paused", reason="training"))
        _, before = await receive_until(
            bela, lambda m: m["type"] == "agent" and m["agent"]["reason"] == "training"
        )
        assert all(m["type"] != "pop" for m in before)
        assert all(m["agent"]["username"] == "bela" for m in before if m["type"] == "agent")
        await asha.close()
        await bela.close()
    finally:
        await other.close()


async def test_console_pushes_her_view_periodically(world: WebWorld) -> None:
    await sign_in(world.client, "asha")
    ws = await world.client.ws_connect("/ws/console", origin=world.origin)
    await receive_until(ws, lambda m: m["type"] == "hello")
    # No change happens: every further message is the periodic push of her view.
    for _ in range(3):
        message, _ = await receive_until(ws, lambda m: m["type"] == "agent")
        assert message["agent"]["username"] == "asha"
    await ws.close()


async def test_wallboard_pushes_periodically_and_follows_stats(
    world: WebWorld, stats: StatsStub
) -> None:
    await sign_in(world.client, "deepa")
    ws = await world.client.ws_connect("/ws/wallboard", origin=world.origin)
    hello, _ = await receive_until(ws, lambda m: m["type"] == "wallboard")
    assert [a["username"] for a in hello["agents"]] == ["asha", "bela", "chitra", "deepa", "esha"]
    for _ in range(2):
        await receive_until(ws, lambda m: m["type"] == "wallboard")
    stats.snapshots["up-east"] = {
        "node": "up-east", "queues": [{"queue": "wpl-general-hi", "waiting": 4}],
        "abandoned_calls": [{"caller": "T-BBBB22", "call_id": "2.2", "at": 5.0}],
    }
    update, _ = await receive_until(
        ws, lambda m: m["type"] == "wallboard" and m["queues"][0]["queues"] != []
    )
    assert update["queues"][0]["queues"][0]["waiting"] == 4
    assert update["abandoned"] == [
        {"node": "up-east", "caller": "T-BBBB22", "call_id": "2.2", "at": 5.0}
    ]
    await ws.close()


@pytest.mark.parametrize("origin", [None, "http://evil.example", "null"])
async def test_socket_from_another_origin_refused(world: WebWorld, origin: str | None) -> None:
    await sign_in(world.client, "deepa")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await world.client.ws_connect("/ws/wallboard", origin=origin)
    assert refused.value.status == 403


async def test_sockets_need_a_session_and_the_right_role(world: WebWorld) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as anonymous:
        await world.client.ws_connect("/ws/console", origin=world.origin)
    assert anonymous.value.status == 401
    await sign_in(world.client, "chitra")
    with pytest.raises(aiohttp.WSServerHandshakeError) as counsellor:
        await world.client.ws_connect("/ws/wallboard", origin=world.origin)
    assert counsellor.value.status == 403


async def test_socket_closes_when_she_signs_out(world: WebWorld) -> None:
    csrf = await sign_in(world.client, "asha")
    ws = await world.client.ws_connect("/ws/console", origin=world.origin)
    await receive_until(ws, lambda m: m["type"] == "hello")
    assert (await world.client.delete("/api/session", headers={"X-CSRF-Token": csrf})).status \
        == 204
    while True:
        frame = await ws.receive(timeout=10)
        if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            break
    assert ws.close_code == 4401


async def test_slow_socket_is_closed_and_others_keep_going(world: WebWorld) -> None:
    await sign_in(world.client, "asha")
    other = await _second_client(world)
    try:
        await _sign_in(other, "bela")
        asha = await world.client.ws_connect("/ws/console", origin=world.origin)
        bela = await other.ws_connect("/ws/console", origin=world.origin)
        await receive_until(asha, lambda m: m["type"] == "hello")
        await receive_until(bela, lambda m: m["type"] == "hello")

        hub = world.client.app[HUB]
        # A burst larger than her queue, with no chance for her writer to run in between:
        # exactly what a browser that stopped reading looks like to the hub.
        burst = json.dumps({"type": "noise", "padding": "x" * 100})
        delivered = [hub.to_console("asha", burst) for _ in range(20)]
        assert delivered[:8] == [1] * 8 and delivered[-1] == 0

        while True:
            frame = await asha.receive(timeout=10)
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
        assert asha.close_code == 1013
        assert "asha" not in hub.console_users()

        world.directory.pop(ScreenPop(username="bela", phase="ringing", card=card()))
        pop, _ = await receive_until(bela, lambda m: m["type"] == "pop")
        assert pop["pop"]["username"] == "bela"
        await bela.close()
    finally:
        await other.close()
