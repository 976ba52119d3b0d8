"""Issue 5 end to end: agents' state kept in step with the simulated PBX over real AMI/TCP.

The simulated Asterisk runs the shipped dialplan, queues and manager filters; the backend's
AMI client, PBX node, IVR and agents service talk to it over loopback TCP; accounts live in
the migrated store (SQLite file and PostgreSQL). Agents' softphones are SimAgents named like
the accounts' endpoints.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from argon2 import PasswordHasher

from callcenter.agents.accounts import AccountService
from callcenter.agents.errors import UnknownPauseReason
from callcenter.agents.service import AgentService, NotLoggedIn, RecordedCallHistory, problem
from callcenter.agents.state import Policy
from callcenter.agents.views import AgentView, ScreenPop
from callcenter.ami import AMIClient, Frame
from callcenter.ami.client import Backoff
from callcenter.pbx.events import AgentCompleted
from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import Helpline, helpline, until

CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
PASSWORD = "a long enough passphrase"
# IVR answers: silence at "danger", Hindi, internet harassment, callback yes.
HINDI_INTERNET = ["", "1", "2", "1"]
ENGLISH_INTERNET = ["", "2", "2", "1"]


@dataclass(frozen=True)
class Desk:
    username: str
    endpoint: str
    skills: tuple[str, ...]
    answer_after: float | None = 1.0


@dataclass
class Floor:
    line: Helpline
    service: AgentService
    pops: list[ScreenPop] = field(default_factory=list)
    changes: list[AgentView] = field(default_factory=list)

    def pops_for(self, username: str, phase: str | None = None) -> list[ScreenPop]:
        return [p for p in self.pops if p.username == username
                and (phase is None or p.phase == phase)]

    def state(self, username: str) -> str | None:
        view = self.service.view(username)
        return None if view is None else view.state

    async def queue_status(self) -> dict[str, dict[str, tuple[bool, str]]]:
        """A fresh QueueStatus: interface -> queue -> (paused, reason)."""
        assert self.line.backend is not None
        members: dict[str, dict[str, tuple[bool, str]]] = {}
        for frame in await self.line.backend.node.ops.queue_status():
            if frame.name == "QueueMember":
                members.setdefault(frame["Location"], {})[frame["Queue"]] = (
                    frame["Paused"] == "1", frame.get("PausedReason") or "",
                )
        return members


@asynccontextmanager
async def floor(
    store: Store, desks: Sequence[Desk], *, policy: Policy | None = None
) -> AsyncIterator[Floor]:
    agents = [SimAgent(d.endpoint, d.username.title(), answer_after=d.answer_after)
              for d in desks]
    async with helpline(store, agents) as line:
        backend = await line.start_backend()
        await line.wait_heartbeat()
        accounts = AccountService(store, hasher=CHEAP)
        for desk in desks:
            await accounts.add(
                desk.username, display_name=desk.username.title(), role="agent",
                endpoint=f"PJSIP/{desk.endpoint}", password=PASSWORD, skills=desk.skills,
            )
        service = AgentService(
            backend.node, accounts, policy=policy, history=RecordedCallHistory(store),
            clock=line.sim.clock,
        )
        result = Floor(line, service)
        service.on_screen_pop(result.pops.append)
        service.on_change(result.changes.append)
        await service.start()
        try:
            yield result
        finally:
            await service.close()


def other_client(line: Helpline) -> AMIClient:
    """Someone else on the PBX (a supervisor's tool, the Asterisk CLI)."""
    user = line.sim.config.users[0]
    return AMIClient("127.0.0.1", line.sim.port, user.username, user.secret, "md5",
                     ping_interval=None)


MEERA = Desk("meera", "agent1", ("hi",))
ASHA = Desk("asha", "agent2", ("en",))


async def test_login_puts_her_in_her_skill_queues_and_logout_takes_her_out(
    migrated_store: Store,
) -> None:
    async with floor(migrated_store, [MEERA]) as f:
        view = await f.service.login("meera")
        assert view.state == "available"
        truth = await f.queue_status()
        assert truth["PJSIP/agent1"] == {
            "wpl-general-hi": (False, ""), "wpl-fallback": (False, ""),
        }
        added = f.line.named("QueueMemberAdded")
        # queue_log names her by username, never by a person's name or a number.
        assert {a["MemberName"] for a in added} == {"meera"}
        await until(lambda: f.service.view("meera").queues  # type: ignore[union-attr]
                    == ("wpl-general-hi", "wpl-fallback"))
        assert f.service.view("meera").softphone == "registered"  # type: ignore[union-attr]

        view = await f.service.logout("meera")
        assert view.state == "logged_out"
        assert "PJSIP/agent1" not in await f.queue_status()
        await until(lambda: f.service.view("meera").queues == ())  # type: ignore[union-attr]


async def test_pause_with_a_reason_reaches_the_pbx_and_her_view(migrated_store: Store) -> None:
    async with floor(migrated_store, [MEERA]) as f:
        with pytest.raises(NotLoggedIn) as refused:
            await f.service.pause("meera", "meal")
        assert problem(refused.value).code == "not_logged_in"
        await f.service.login("meera")
        with pytest.raises(UnknownPauseReason) as unknown:
            await f.service.pause("meera", "gossip")
        assert problem(unknown.value).code == "unknown_pause_reason"

        await f.service.pause("meera", "meal")
        pauses = [(p["Queue"], p["Paused"], p["PausedReason"])
                  for p in f.line.named("QueueMemberPause")]
        assert sorted(pauses) == [("wpl-fallback", "1", "meal"), ("wpl-general-hi", "1", "meal")]
        assert (await f.queue_status())["PJSIP/agent1"] == {
            "wpl-general-hi": (True, "meal"), "wpl-fallback": (True, "meal"),
        }
        await until(lambda: f.service.view("meera").paused_queues  # type: ignore[union-attr]
                    == ("wpl-general-hi", "wpl-fallback"))
        view = f.service.view("meera")
        assert view is not None and (view.state, view.reason) == ("paused", "meal")

        await f.service.unpause("meera")
        assert (await f.queue_status())["PJSIP/agent1"] == {
            "wpl-general-hi": (False, ""), "wpl-fallback": (False, ""),
        }
        await until(lambda: f.service.view("meera").paused_queues == ())  # type: ignore[union-attr]
        assert f.state("meera") == "available"


async def test_a_pause_someone_else_sets_on_the_pbx_shows_with_its_reason(
    migrated_store: Store,
) -> None:
    async with floor(migrated_store, [MEERA]) as f:
        await f.service.login("meera")
        async with other_client(f.line) as supervisor:
            await supervisor.send_action(
                "QueuePause", Interface="PJSIP/agent1", Queue="wpl-general-hi",
                Paused="true", Reason="supervisor-hold",
            )
        await until(lambda: f.state("meera") == "paused")
        view = f.service.view("meera")
        assert view is not None and view.reason == "supervisor-hold"
        # Paused is paused everywhere: the plan spreads her pause to her other queues.
        await until(lambda: f.service.view("meera").paused_queues  # type: ignore[union-attr]
                    == ("wpl-general-hi", "wpl-fallback"))
        assert (await f.queue_status())["PJSIP/agent1"]["wpl-fallback"] == (
            True, "supervisor-hold",
        )
        # She can end it herself.
        await f.service.unpause("meera")
        await until(lambda: f.service.view("meera").paused_queues == ())  # type: ignore[union-attr]
        assert f.state("meera") == "available"


async def test_the_rung_agent_alone_gets_the_screen_pop_before_she_answers(
    migrated_store: Store,
) -> None:
    desks = [Desk("meera", "agent1", ("emergency",), answer_after=2.0), ASHA]
    async with floor(migrated_store, desks) as f:
        connects_when_popped: list[int] = []
        f.service.on_screen_pop(
            lambda pop: connects_when_popped.append(len(f.line.named("AgentConnect")))
            if pop.phase == "ringing" else None
        )
        await f.service.login("meera")
        await f.service.login("asha")
        caller = f.line.call([], talk_time=2)  # silent: wpl-emergency, flagged "silent"
        await until(lambda: f.pops_for("meera", "connected"), within=30)
        ringing = f.pops_for("meera", "ringing")
        assert len(ringing) == 1
        # At the ring, the PBX had not connected anybody yet.
        assert connects_when_popped == [0]
        assert f.pops.index(ringing[0]) < f.pops.index(f.pops_for("meera", "connected")[0])
        card = ringing[0].card
        assert card.caller.startswith("T-")
        assert card.queue == "wpl-emergency"
        assert "silent" in card.flags and card.risk == "high"
        assert card.linkedid == caller.outcome.uniqueid
        assert f.pops_for("asha") == []
        # Nothing a console receives carries her number.
        assert caller.script.caller_num
        assert all(caller.script.caller_num not in repr(dataclasses.asdict(p)) for p in f.pops)
        connected = f.pops_for("meera", "connected")[0]
        assert connected.card.answered_at is not None
        assert connected.card.ivr_path  # the IVR's choices, from the call record
        await until(lambda: f.pops_for("meera", "ended"), within=20)


async def test_a_repeat_caller_comes_with_her_earlier_call(migrated_store: Store) -> None:
    async with floor(migrated_store, [MEERA]) as f:
        await f.service.login("meera")
        number = "9876501234"
        first = f.line.call(HINDI_INTERNET, number=number, talk_time=2)
        await until(lambda: first.done.is_set(), within=30)
        assert f.line.backend is not None
        await until(lambda: f.state("meera") == "wrap_up")
        await f.line.backend.node.drain()
        await f.service.wrap_up_done("meera")

        second = f.line.call(HINDI_INTERNET, number=number, talk_time=2)
        await until(lambda: len(f.pops_for("meera", "connected")) == 2, within=30)
        first_pop, second_pop = f.pops_for("meera", "connected")
        assert first_pop.earlier == ()
        assert second_pop.card.caller == first_pop.card.caller  # one woman, one token
        assert [e.linkedid for e in second_pop.earlier] == [first.outcome.uniqueid]
        earlier = second_pop.earlier[0]
        assert earlier.outcome == "answered" and earlier.category == "cyber-harassment"
        assert second_pop.card.linkedid == second.outcome.uniqueid
        second.hang_up()


async def test_wrap_up_pauses_her_queues_at_connect_but_never_the_fallback(
    migrated_store: Store,
) -> None:
    async with floor(migrated_store, [MEERA]) as f:
        await f.service.login("meera")
        caller = f.line.call(HINDI_INTERNET)  # talks until we hang her up
        await until(lambda: f.state("meera") == "on_call", within=30)
        # Set at AgentConnect, while the call is still up, in the queue that rang her.
        await until(lambda: f.service.view("meera").paused_queues  # type: ignore[union-attr]
                    == ("wpl-general-hi",))
        assert (await f.queue_status())["PJSIP/agent1"] == {
            "wpl-general-hi": (True, "wrapup"), "wpl-fallback": (False, ""),
        }
        assert caller.outcome.ended is None
        caller.hang_up()
        await until(lambda: f.state("meera") == "wrap_up")
        view = f.service.view("meera")
        assert view is not None and view.reason == "wrapup" and view.wrap_up_deadline
        assert view.call is not None and view.call.linkedid == caller.outcome.uniqueid

        await f.service.wrap_up_done("meera")
        assert (await f.queue_status())["PJSIP/agent1"] == {
            "wpl-general-hi": (False, ""), "wpl-fallback": (False, ""),
        }
        assert f.state("meera") == "available"
        wrapups = [p for p in f.line.named("QueueMemberPause") if p["PausedReason"] == "wrapup"]
        assert wrapups and all(p["Queue"] == "wpl-general-hi" for p in wrapups)


async def test_wrap_up_ends_by_itself_when_its_time_runs_out(migrated_store: Store) -> None:
    policy = Policy(wrap_up=timedelta(seconds=8))
    async with floor(migrated_store, [MEERA], policy=policy) as f:
        await f.service.login("meera")
        f.line.call(HINDI_INTERNET, talk_time=2)
        await until(lambda: f.state("meera") == "wrap_up", within=30)
        assert (await f.queue_status())["PJSIP/agent1"]["wpl-general-hi"] == (True, "wrapup")
        await until(lambda: f.state("meera") == "available", within=10)
        await until(lambda: f.service.view("meera").paused_queues == ())  # type: ignore[union-attr]
        assert (await f.queue_status())["PJSIP/agent1"] == {
            "wpl-general-hi": (False, ""), "wpl-fallback": (False, ""),
        }
        # The wrap-up lasted (in PBX seconds) what the policy says, not until a form came.
        wrap = [v for v in f.changes if v.username == "meera" and v.state == "wrap_up"]
        back = [v for v in f.changes if v.username == "meera" and v.state == "available"]
        assert back[-1].since - wrap[0].since >= 8


def _snapshot_members(frames: Sequence[Frame]) -> dict[str, dict[str, tuple[bool, str]]]:
    members: dict[str, dict[str, tuple[bool, str]]] = {}
    for frame in frames:
        if frame.name == "QueueMember":
            members.setdefault(frame["Location"], {})[frame["Queue"]] = (
                frame["Paused"] == "1", frame.get("PausedReason") or "",
            )
    return members


async def test_after_the_ami_link_dies_mid_call_views_and_model_match_the_pbx(
    migrated_store: Store,
) -> None:
    async with floor(migrated_store, [MEERA, ASHA]) as f:
        backend = f.line.backend
        assert backend is not None
        completed: list[str] = []
        backend.node.on_event(
            lambda e: completed.append(e.caller.uniqueid)
            if isinstance(e, AgentCompleted) else None
        )
        await f.service.login("meera")
        await f.service.login("asha")
        hindi = f.line.call(HINDI_INTERNET)
        english = f.line.call(ENGLISH_INTERNET)
        await until(lambda: f.state("meera") == f.state("asha") == "on_call", within=30)
        await f.service.settled()
        resyncs = backend.node.resyncs
        # Long enough for the PBX to move on without us: its events are lost for good.
        backend.client.backoff = Backoff(initial=0.4, maximum=0.4, jitter=0.0)
        protocol = backend.client._protocol
        assert protocol is not None and protocol.transport is not None
        protocol.transport.abort()
        hindi.hang_up()  # meera's call ends while nobody listens
        async with other_client(f.line) as supervisor:
            await supervisor.send_action(
                "QueuePause", Interface="PJSIP/agent2", Queue="wpl-general-en",
                Paused="true", Reason="supervisor-hold",
            )
        await until(lambda: hindi.done.is_set())
        assert backend.node.resyncs == resyncs  # still cut off
        await until(lambda: backend.node.resyncs > resyncs, within=5)

        async def matches() -> bool:
            await f.service.settled()
            truth = _snapshot_members(await backend.node.ops.queue_status())
            channels = {
                c["Uniqueid"]: (c["Channel"], c.get("BridgeId") or "")
                for c in await backend.node.ops.channels() if c.name == "CoreShowChannel"
            }
            model = backend.node.model
            if {u: (c.name, c.bridge_id) for u, c in model.channels.items()} != channels:
                return False
            for interface, queues in truth.items():
                mine = {m.queue: (m.paused, m.paused_reason)
                        for m in model.members_of(interface)}
                if mine != queues:
                    return False
            for view in f.service.views():
                queues = truth.get(view.endpoint, {})
                if set(view.queues) != set(queues):
                    return False
                if set(view.paused_queues) != {q for q, (p, _) in queues.items() if p}:
                    return False
                if view.reason is not None and any(
                    r != view.reason for q, (p, r) in queues.items()
                    if p and q != "wpl-fallback"
                ):
                    return False
            return True

        async with asyncio.timeout(2.0):
            while not await matches():
                pass
        meera, asha = f.service.view("meera"), f.service.view("asha")
        assert meera is not None and asha is not None
        assert hindi.outcome.uniqueid not in completed  # its AgentComplete never reached us
        # Her call ended while we were away: she is in wrap-up, paused where it rang.
        assert (meera.state, meera.reason, meera.paused_queues) == (
            "wrap_up", "wrapup", ("wpl-general-hi",),
        )
        # Asha is still on her call; the supervisor's pause waits for its end.
        assert asha.state == "on_call" and asha.call is not None
        assert asha.call.linkedid == english.outcome.uniqueid
        truth = await f.queue_status()
        assert truth["PJSIP/agent2"] == {
            "wpl-general-en": (True, "wrapup"), "wpl-fallback": (True, "supervisor-hold"),
        }
        english.hang_up()
        await until(lambda: f.state("asha") == "wrap_up")
        await f.service.wrap_up_done("asha")
        view = f.service.view("asha")
        assert view is not None and (view.state, view.reason) == ("paused", "supervisor-hold")
