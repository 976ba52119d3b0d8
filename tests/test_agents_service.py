"""The agents service's own rules, on the simulated PBX over real AMI/TCP.

Ring-no-answer autopause, the recovery pause after a danger call, refusals with stable
codes, timers that never act on a wrap-up that is over, softphone state, and taking over
the agents a restarted backend finds on the PBX. Accounts live in a migrated SQLite store
(the PostgreSQL path of the same queries is covered by tests/test_agents_e2e.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from callcenter.agents.accounts import AccountService
from callcenter.agents.errors import InvalidTransition
from callcenter.agents.service import (
    AgentService,
    CannotTakeCalls,
    EndpointInUse,
    NotLoggedIn,
    RecordedCallHistory,
    problem,
)
from callcenter.agents.state import Policy
from callcenter.agents.views import AgentView, ScreenPop
from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import Helpline, helpline, until

CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
PASSWORD = "a long enough passphrase"
HINDI_INTERNET = ["", "1", "2", "1"]
DANGER = ["1"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'agents.sqlite3'}")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


@dataclass
class Floor:
    line: Helpline
    accounts: AccountService
    service: AgentService
    pops: list[ScreenPop] = field(default_factory=list)
    changes: list[AgentView] = field(default_factory=list)

    def view(self, username: str) -> AgentView:
        view = self.service.view(username)
        assert view is not None
        return view

    async def members(self, interface: str) -> dict[str, tuple[bool, str]]:
        assert self.line.backend is not None
        return {
            f["Queue"]: (f["Paused"] == "1", f.get("PausedReason") or "")
            for f in await self.line.backend.node.ops.queue_status()
            if f.name == "QueueMember" and f["Location"] == interface
        }

    def new_service(self, policy: Policy | None = None) -> AgentService:
        assert self.line.backend is not None
        service = AgentService(
            self.line.backend.node, self.accounts, policy=policy,
            history=RecordedCallHistory(self.line.store), clock=self.line.sim.clock,
        )
        service.on_screen_pop(self.pops.append)
        service.on_change(self.changes.append)
        return service


@asynccontextmanager
async def floor(
    store: Store,
    phones: Sequence[SimAgent] = (SimAgent("agent1", "Agent One", answer_after=1.0),),
    *,
    policy: Policy | None = None,
) -> AsyncIterator[Floor]:
    async with helpline(store, phones) as line:
        await line.start_backend()
        await line.wait_heartbeat()
        accounts = AccountService(store, hasher=CHEAP)
        result = Floor(line, accounts, None)  # type: ignore[arg-type]
        result.service = result.new_service(policy)
        await result.service.start()
        try:
            yield result
        finally:
            await result.service.close()


async def add(f: Floor, username: str, endpoint: str, skills: Sequence[str],
              role: str = "agent") -> None:
    await f.accounts.add(username, display_name=username.title(), role=role,
                         endpoint=endpoint, password=PASSWORD, skills=skills)


async def test_a_ring_nobody_answers_pauses_her_everywhere_with_its_cause(store: Store) -> None:
    async with floor(store, [SimAgent("agent1", "Agent One", answer_after=None)]) as f:
        await add(f, "meera", "PJSIP/agent1", ["hi"])
        await f.service.login("meera")
        caller = f.line.call(HINDI_INTERNET)
        await until(lambda: f.view("meera").state == "paused", within=30)
        view = f.view("meera")
        assert view.reason == "autopause"
        assert f.service.detail("meera") == "autopause (no answer in wpl-general-hi)"
        # app_queue paused her in the queue that rang ("Auto-Pause"); the backend pauses
        # her in every queue, so no other caller waits 15 s on an empty desk.
        await until(lambda: f.view("meera").paused_queues == ("wpl-general-hi", "wpl-fallback"))
        await f.service.settled()
        assert await f.members("PJSIP/agent1") == {
            "wpl-general-hi": (True, "autopause"), "wpl-fallback": (True, "autopause"),
        }
        assert [p.phase for p in f.pops] == ["ringing", "ended"]
        assert f.view("meera").call is None
        caller.hang_up()


async def test_after_a_danger_call_she_gets_the_recovery_pause_then_is_back(
    store: Store,
) -> None:
    policy = Policy(recovery=timedelta(seconds=10))
    async with floor(store, policy=policy) as f:
        await add(f, "meera", "PJSIP/agent1", ["emergency"])
        await f.service.login("meera")
        caller = f.line.call(DANGER)
        await until(lambda: f.view("meera").state == "on_call", within=30)
        assert "danger" in f.pops[-1].card.flags
        # From AgentConnect: no fallback call lands on her before she has recovered.
        await until(lambda: f.view("meera").paused_queues == ("wpl-emergency", "wpl-fallback"))
        await f.service.settled()
        assert await f.members("PJSIP/agent1") == {
            "wpl-emergency": (True, "wrapup"), "wpl-fallback": (True, "recovery"),
        }
        caller.hang_up()
        await until(lambda: f.view("meera").state == "wrap_up")
        await f.service.wrap_up_done("meera")
        view = f.view("meera")
        assert (view.state, view.reason) == ("paused", "recovery")
        assert await f.members("PJSIP/agent1") == {
            "wpl-emergency": (True, "recovery"), "wpl-fallback": (True, "recovery"),
        }
        await until(lambda: f.view("meera").state == "available", within=5)
        await until(lambda: f.view("meera").paused_queues == ())


async def test_refusals_carry_stable_codes(store: Store) -> None:
    async with floor(store) as f:
        await add(f, "meera", "PJSIP/agent1", ["hi"])
        await add(f, "night", "PJSIP/agent1", ["en"])  # same desk, next shift
        await add(f, "sunita", "PJSIP/agent9", [], role="supervisor")
        with pytest.raises(CannotTakeCalls) as supervisor:
            await f.service.login("sunita")
        assert problem(supervisor.value).code == "cannot_take_calls"
        await f.service.login("meera")
        with pytest.raises(InvalidTransition) as again:
            await f.service.login("meera")
        assert problem(again.value).code == "invalid_transition"
        with pytest.raises(EndpointInUse) as shared:
            await f.service.login("night")
        assert problem(shared.value).code == "endpoint_in_use"
        assert "meera" in problem(shared.value).message
        with pytest.raises(NotLoggedIn):
            await f.service.wrap_up_done("night")
        with pytest.raises(InvalidTransition) as no_wrapup:
            await f.service.wrap_up_done("meera")
        assert problem(no_wrapup.value).code == "invalid_transition"
        # Once she is gone, the next shift takes the desk and its own queues.
        await f.service.logout("meera")
        await f.service.login("night")
        assert await f.members("PJSIP/agent1") == {
            "wpl-general-en": (False, ""), "wpl-fallback": (False, ""),
        }
        assert [v.username for v in f.service.views()] == ["meera", "night"]


async def test_a_wrap_up_timer_never_acts_after_her_wrap_up_is_over(store: Store) -> None:
    policy = Policy(wrap_up=timedelta(seconds=10))
    async with floor(store, policy=policy) as f:
        await add(f, "meera", "PJSIP/agent1", ["hi"])
        await f.service.login("meera")
        f.line.call(HINDI_INTERNET, talk_time=2)
        await until(lambda: f.view("meera").state == "wrap_up", within=30)
        deadline = f.view("meera").wrap_up_deadline
        assert deadline is not None
        await f.service.wrap_up_done("meera")
        await f.service.pause("meera", "break")
        # Past the old deadline on the PBX clock: its timer must have been cancelled.
        await until(lambda: f.line.sim.clock.now() > deadline + 3, within=5)
        await f.service.settled()
        assert (f.view("meera").state, f.view("meera").reason) == ("paused", "break")
        assert await f.members("PJSIP/agent1") == {
            "wpl-general-hi": (True, "break"), "wpl-fallback": (True, "break"),
        }


async def test_her_softphone_state_follows_the_pbx(store: Store) -> None:
    async with floor(store) as f:
        await add(f, "meera", "PJSIP/agent1", ["hi"])
        await f.service.login("meera")
        await until(lambda: f.view("meera").softphone == "registered")
        f.line.sim.core.phones["agent1"].registered = False
        f.line.sim.core.device_changed("PJSIP/agent1")
        await until(lambda: f.view("meera").softphone == "unreachable")
        assert any(v.softphone == "unreachable" for v in f.changes)


async def test_a_restarted_backend_takes_over_the_agents_it_finds_on_the_pbx(
    store: Store,
) -> None:
    phones = [SimAgent("agent1", "Agent One"), SimAgent("agent2", "Agent Two")]
    async with floor(store, phones) as f:
        await add(f, "meera", "PJSIP/agent1", ["hi"])
        await add(f, "asha", "PJSIP/agent2", ["en"])
        await f.service.login("meera")
        await f.service.login("asha")
        await f.service.pause("asha", "meal")
        await f.service.close()
        # A wrap-up left behind by the instance that died: nobody here knows its end.
        assert f.line.backend is not None
        await f.line.backend.node.ops.pause_member(
            "PJSIP/agent1", True, queue="wpl-general-hi", reason="wrapup"
        )
        await f.line.backend.kill()
        f.line.backend = None

        await f.line.start_backend()
        f.service = f.new_service()
        await f.service.start()
        await f.service.settled()
        meera, asha = f.view("meera"), f.view("asha")
        assert (meera.state, meera.queues, meera.paused_queues) == (
            "available", ("wpl-general-hi", "wpl-fallback"), (),
        )
        assert (asha.state, asha.reason) == ("paused", "meal")
        assert await f.members("PJSIP/agent1") == {
            "wpl-general-hi": (False, ""), "wpl-fallback": (False, ""),
        }
        assert await f.members("PJSIP/agent2") == {
            "wpl-general-en": (True, "meal"), "wpl-fallback": (True, "meal"),
        }
        await f.service.unpause("asha")
        await until(lambda: f.view("asha").paused_queues == ())
