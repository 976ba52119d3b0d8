"""Sign-in, sessions, cookie flags, rate limits, CSRF and security headers, over real TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from callcenter.bus import InProcessBus
from callcenter.store import Store
from tests.support.web import (
    PASSWORD,
    MemoryAgentDirectory,
    WebWorld,
    add_staff,
    cheap_accounts,
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
async def world(sqlite_store: Store) -> AsyncIterator[WebWorld]:
    accounts = cheap_accounts(sqlite_store)
    directory = MemoryAgentDirectory()
    await add_staff(accounts, directory)
    async with InProcessBus() as bus, serve(
        store=sqlite_store, bus=bus, accounts=accounts, directory=directory,
        options=web_options(login_limit_per_user=3, login_limit_per_address=6),
    ) as world:
        yield world


def _set_cookie(response: object) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):  # type: ignore[attr-defined]
        cookie.load(header)
    return cookie


async def test_sign_in_on_each_store_then_whoami_then_sign_out(migrated_store: Store) -> None:
    accounts = cheap_accounts(migrated_store)
    directory = MemoryAgentDirectory()
    await add_staff(accounts, directory)
    async with InProcessBus() as bus, serve(
        store=migrated_store, bus=bus, accounts=accounts, directory=directory
    ) as world:
        client = world.client
        assert (await client.get("/api/session")).status == 401

        csrf = await sign_in(client, "Asha")  # usernames are case-insensitive
        me = await client.get("/api/session")
        assert me.status == 200
        body = await me.json()
        assert body["username"] == "asha"
        assert body["role"] == "agent"
        assert body["csrf_token"] == csrf

        assert (await client.delete("/api/session", headers={"X-CSRF-Token": csrf})).status == 204
        assert (await client.get("/api/session")).status == 401


async def test_cookie_flags(sqlite_store: Store) -> None:
    accounts = cheap_accounts(sqlite_store)
    await add_staff(accounts, None)
    async with InProcessBus() as bus, serve(
        store=sqlite_store, bus=bus, accounts=accounts, directory=MemoryAgentDirectory(),
        options=web_options(cookie_secure=True),
    ) as world:
        response = await world.client.post(
            "/api/session", json={"username": "asha", "password": PASSWORD}
        )
        assert response.status == 200
        morsel = _set_cookie(response)["cc_session"]
        assert morsel["httponly"] is True
        assert morsel["secure"] is True
        assert morsel["samesite"] == "Strict"
        assert morsel["path"] == "/"
        assert len(morsel.value) >= 40  # 256 random bits, URL-safe
        # The id is nowhere in the body: scripts cannot read it.
        assert morsel.value not in await response.text()


async def test_cookie_not_secure_when_configured_off(world: WebWorld) -> None:
    response = await world.client.post(
        "/api/session", json={"username": "asha", "password": PASSWORD}
    )
    assert _set_cookie(response)["cc_session"]["secure"] == ""


async def test_wrong_password_and_unknown_user_get_the_same_answer(world: WebWorld) -> None:
    client = world.client
    wrong = await client.post("/api/session", json={"username": "asha", "password": "nope" * 3})
    unknown = await client.post(
        "/api/session", json={"username": "nobody", "password": "nope" * 3}
    )
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json()
    assert (await wrong.json())["error"]["code"] == "invalid_credentials"
    assert "Set-Cookie" not in wrong.headers


async def test_disabled_account_cannot_sign_in(sqlite_store: Store) -> None:
    accounts = cheap_accounts(sqlite_store)
    await add_staff(accounts, None)
    await accounts.disable("bela")
    async with InProcessBus() as bus, serve(
        store=sqlite_store, bus=bus, accounts=accounts, directory=MemoryAgentDirectory()
    ) as world:
        response = await world.client.post(
            "/api/session", json={"username": "bela", "password": PASSWORD}
        )
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_credentials"


async def test_rate_limit_per_username(world: WebWorld) -> None:
    client = world.client
    for _ in range(3):
        response = await client.post(
            "/api/session", json={"username": "asha", "password": "wrong password"}
        )
        assert response.status == 401
    limited = await client.post("/api/session", json={"username": "asha", "password": PASSWORD})
    assert limited.status == 429
    assert (await limited.json())["error"]["code"] == "too_many_attempts"
    assert 1 <= int(limited.headers["Retry-After"]) <= 300
    # Another account from the same address is still allowed (address limit is 6).
    await sign_in(client, "bela")


async def test_rate_limit_per_address_across_usernames(world: WebWorld) -> None:
    client = world.client
    statuses = []
    for i in range(8):
        response = await client.post(
            "/api/session", json={"username": f"spray{i}", "password": "Summer2026!"}
        )
        statuses.append(response.status)
    assert statuses[:6] == [401] * 6
    assert statuses[6:] == [429, 429]


async def test_successful_sign_in_clears_her_failures(world: WebWorld) -> None:
    client = world.client
    for _ in range(2):
        await client.post("/api/session", json={"username": "asha", "password": "wrong password"})
    await sign_in(client, "asha")
    for _ in range(2):
        response = await client.post(
            "/api/session", json={"username": "asha", "password": "wrong password"}
        )
        assert response.status == 401


async def test_sign_in_rotates_the_session_id(world: WebWorld) -> None:
    client = world.client
    await sign_in(client, "asha")
    first = client.session.cookie_jar.filter_cookies(client.make_url("/"))["cc_session"].value
    await sign_in(client, "asha")
    second = client.session.cookie_jar.filter_cookies(client.make_url("/"))["cc_session"].value
    assert first != second
    # The old id is dead: replaying it gets nothing.
    replay = await client.get("/api/session", cookies={"cc_session": first})
    assert replay.status == 401


async def test_state_change_without_csrf_token_is_refused(world: WebWorld) -> None:
    client = world.client
    csrf = await sign_in(client, "asha")
    for headers in ({}, {"X-CSRF-Token": "x" + csrf[1:]}):
        response = await client.post("/api/me/login-queues", headers=headers)
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "csrf_failed"
        assert world.directory.view("asha").state == "logged_out"  # type: ignore[union-attr]
    refused_logout = await client.delete("/api/session")
    assert refused_logout.status == 403
    ok = await client.post("/api/me/login-queues", headers={"X-CSRF-Token": csrf})
    assert ok.status == 200
    assert world.directory.view("asha").state == "available"  # type: ignore[union-attr]


async def test_idle_session_expires(sqlite_store: Store) -> None:
    accounts = cheap_accounts(sqlite_store)
    await add_staff(accounts, None)
    async with InProcessBus() as bus, serve(
        store=sqlite_store, bus=bus, accounts=accounts, directory=MemoryAgentDirectory(),
        options=web_options(session_idle=0.2),
    ) as world:
        await sign_in(world.client, "asha")
        assert (await world.client.get("/api/session")).status == 200
        import asyncio

        await asyncio.sleep(0.3)
        assert (await world.client.get("/api/session")).status == 401


async def test_security_headers_on_api_pages_and_static(world: WebWorld) -> None:
    for path in ("/api/session", "/login", "/static/app.css", "/healthz"):
        response = await world.client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"


async def test_login_needs_json(world: WebWorld) -> None:
    # An HTML form posted from another site is form-encoded: refused before any check.
    response = await world.client.post(
        "/api/session", data={"username": "asha", "password": PASSWORD}
    )
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_media_type"
