"""What the web tests run against: the app on real loopback TCP, real accounts on a migrated
store, and an in-memory agents directory (our own collaborator, not an external system).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry

from callcenter.agents.accounts import AccountService
from callcenter.agents.errors import InvalidTransition, UnknownAccount, UnknownPauseReason
from callcenter.agents.views import (
    AgentListener,
    AgentView,
    CallCard,
    PopListener,
    ScreenPop,
)
from callcenter.bus import Bus
from callcenter.pbx.models import CallRecord
from callcenter.store import Store
from callcenter.web.app import make_app
from callcenter.web.deps import StoreCallLookup, WebDeps, WebOptions
from callcenter.web.schemas import WrapUpRequest

PASSWORD = "correct horse battery"
CHEAP_HASHER = {"time_cost": 1, "memory_cost": 64, "parallelism": 1}
PAUSE_REASONS = ("break", "meal", "training", "meeting", "recovery")

#: username -> (role, endpoint)
STAFF: dict[str, tuple[str, str]] = {
    "asha": ("agent", "PJSIP/agent1001"),
    "bela": ("agent", "PJSIP/agent1002"),
    "chitra": ("counsellor", "PJSIP/agent1003"),
    "deepa": ("supervisor", "PJSIP/sup2001"),
    "esha": ("admin", "PJSIP/adm3001"),
}


class MemoryAgentDirectory:
    """An AgentDirectory that keeps views in a dict and follows the console's commands."""

    def __init__(self, pause_reasons: tuple[str, ...] = PAUSE_REASONS) -> None:
        self._views: dict[str, AgentView] = {}
        self._reasons = pause_reasons
        self._change: list[AgentListener] = []
        self._pops: list[PopListener] = []

    def add(self, username: str, role: str, endpoint: str) -> AgentView:
        view = AgentView(
            username=username, display_name=username.title(), role=role, endpoint=endpoint,
            state="logged_out", reason=None, since=time.time(), queues=(),
            paused_queues=(), softphone="registered",
        )
        self._views[username] = view
        return view

    def _set(self, view: AgentView) -> AgentView:
        self._views[view.username] = view
        for listener in self._change:
            listener(view)
        return view

    def _get(self, username: str) -> AgentView:
        view = self._views.get(username)
        if view is None:
            raise UnknownAccount(username)
        return view

    def set_view(self, view: AgentView) -> None:
        self._set(view)

    def pop(self, pop: ScreenPop) -> None:
        for listener in self._pops:
            listener(pop)

    async def login(self, username: str) -> AgentView:
        view = self._get(username)
        if view.state != "logged_out":
            raise InvalidTransition(view.state, "log in", "already logged in")
        return self._set(replace(view, state="available", since=time.time(),
                                 queues=("wpl-general-hi", "wpl-fallback")))

    async def logout(self, username: str) -> AgentView:
        view = self._get(username)
        return self._set(replace(view, state="logged_out", reason=None, queues=(),
                                 paused_queues=(), since=time.time()))

    async def pause(self, username: str, reason: str) -> AgentView:
        view = self._get(username)
        if reason not in self._reasons:
            raise UnknownPauseReason(view.state, reason, self._reasons)
        if view.state != "available":
            raise InvalidTransition(view.state, "pause", "only an available agent can pause")
        return self._set(replace(view, state="paused", reason=reason,
                                 paused_queues=view.queues, since=time.time()))

    async def unpause(self, username: str) -> AgentView:
        view = self._get(username)
        if view.state != "paused":
            raise InvalidTransition(view.state, "unpause", "she is not paused")
        return self._set(replace(view, state="available", reason=None, paused_queues=(),
                                 since=time.time()))

    async def wrap_up_done(self, username: str) -> AgentView:
        view = self._get(username)
        if view.state != "wrap_up":
            raise InvalidTransition(view.state, "end wrap-up", "she is not in wrap-up")
        return self._set(replace(view, state="available", reason=None, call=None,
                                 wrap_up_deadline=None, since=time.time()))

    def view(self, username: str) -> AgentView | None:
        return self._views.get(username)

    def views(self) -> list[AgentView]:
        return [self._views[name] for name in sorted(self._views)]

    def pause_reasons(self) -> tuple[str, ...]:
        return self._reasons

    def on_change(self, listener: AgentListener) -> None:
        self._change.append(listener)

    def on_screen_pop(self, listener: PopListener) -> None:
        self._pops.append(listener)


def card(linkedid: str = "1732261000.10", *, flags: tuple[str, ...] = ("silent",)) -> CallCard:
    return CallCard(
        node="up-east", linkedid=linkedid, caller="T-7KQ2M9", queue="wpl-general-hi",
        category="stalking", language="hi", risk="high", flags=flags, callback_ok=True,
        ivr_path="danger>hi>stalking", offered_at=1732261000.0,
    )


async def add_staff(accounts: AccountService, directory: MemoryAgentDirectory | None) -> None:
    for username, (role, endpoint) in STAFF.items():
        await accounts.add(username, display_name=username.title(), role=role,
                           endpoint=endpoint, password=PASSWORD, skills=["hi"])
        if directory is not None:
            directory.add(username, role, endpoint)


async def add_call(store: Store, node: str, linkedid: str, agent_interface: str,
                   **values: Any) -> None:
    async with store.transaction() as session:
        session.add(CallRecord(
            node=node, linkedid=linkedid, caller_token="T-7KQ2M9",
            started_at=values.pop("started_at", datetime(2026, 11, 22, 4, 0, tzinfo=UTC)),
            agent_interface=agent_interface, outcome="answered", flags="silent,danger",
            **values,
        ))


@dataclass
class StatsStub:
    """A stats source the test can change: node -> snapshot dict."""

    snapshots: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Mapping[str, Any]:
        return self.snapshots


@dataclass
class WrapUpInbox:
    forms: list[tuple[str, WrapUpRequest]] = field(default_factory=list)

    async def __call__(self, username: str, form: WrapUpRequest) -> None:
        self.forms.append((username, form))


def web_options(**changes: Any) -> WebOptions:
    base = WebOptions(cookie_secure=False, console_interval=0.05, wallboard_interval=0.05,
                      socket_session_check=0.2)
    return replace(base, **changes)


@dataclass
class WebWorld:
    client: TestClient[web.Request, web.Application]
    deps: WebDeps
    directory: MemoryAgentDirectory

    @property
    def origin(self) -> str:
        return f"http://{self.client.server.host}:{self.client.server.port}"


@asynccontextmanager
async def serve(
    *,
    store: Store,
    bus: Bus,
    accounts: AccountService,
    directory: MemoryAgentDirectory,
    redis: Any = None,
    options: WebOptions | None = None,
    stats: StatsStub | None = None,
    wrapup_sink: WrapUpInbox | None = None,
    pbx_links: Mapping[str, str] | None = None,
    health_store: Store | None = None,
) -> AsyncIterator[WebWorld]:
    deps = WebDeps(
        accounts=accounts,
        agents=directory,
        calls=StoreCallLookup(store),
        bus=bus,
        stats=stats or StatsStub(),
        pbx_links=(lambda: dict(pbx_links or {})),
        store=health_store or store,
        redis=redis,
        options=options or web_options(),
        registry=CollectorRegistry(),
        **({"wrapup_sink": wrapup_sink} if wrapup_sink is not None else {}),
    )
    app = make_app(deps)
    # A fresh cookie jar that accepts cookies from an IP host (the loopback server).
    client = TestClient(TestServer(app, host="127.0.0.1"),
                        cookie_jar=aiohttp.CookieJar(unsafe=True))
    await client.start_server()
    try:
        yield WebWorld(client=client, deps=deps, directory=directory)
    finally:
        await client.close()


def cheap_accounts(store: Store) -> AccountService:
    return AccountService(store, hasher=PasswordHasher(**CHEAP_HASHER))


async def sign_in(client: TestClient[Any, Any], username: str,
                  password: str = PASSWORD) -> str:
    """Sign in and return the CSRF token."""
    response = await client.post("/api/session", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    return str((await response.json())["csrf_token"])


Message = dict[str, Any]


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse, wanted: Callable[[Message], bool], *, limit: int = 400
) -> tuple[Message, list[Message]]:
    """Read messages until one is ``wanted``; return it and every one read before it."""
    seen: list[Message] = []
    for _ in range(limit):
        frame = await ws.receive(timeout=10)
        assert frame.type == aiohttp.WSMsgType.TEXT, frame
        message = json.loads(frame.data)
        if wanted(message):
            return message, seen
        seen.append(message)
    raise AssertionError(f"not among {limit} messages")
