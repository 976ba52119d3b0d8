"""Issue 8 end to end: transfers on the simulated PBX over real AMI/TCP.

The whole product as ``app.py`` builds it (``CallCenter`` + ``serve_web``) serves the
shipped dialplan on the simulator; agents command over HTTP and see their screen-pops on
the console WebSocket. Who hears whom is read from the simulator's audio-path model
(``core.audio_paths()``), times from the PBX's own event timestamps (sim clock).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from callcenter.app import CallCenter, serve_web
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.pbx.model import LiveCall
from callcenter.sim.actors import Caller
from callcenter.sim.helpline import SimAgent
from callcenter.store import Store
from tests.support.helpline import Helpline, backend_settings, helpline, until

PASSWORD = "helpline-password-1090"

#: username, display name, role, sim endpoint, skills
STAFF = [
    ("asha", "Asha", "agent", "agent1", ("hi",)),
    ("meera", "Meera", "counsellor", "agent2", ("counselling",)),
    ("sunita", "Sunita", "supervisor", "agent9", ()),
]
#: The IVR answers that route her to the Hindi general queue (Asha's).
TO_HINDI_DESK = ["", "1", "2", "1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Desk:
    """One signed-in user's browser: an HTTP session and the console socket's pops."""

    username: str
    http: aiohttp.ClientSession
    base: str
    csrf: str
    pops: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, f"{self.base}{path}", json=body,
                                     headers={"X-CSRF-Token": self.csrf}) as response:
            return response.status, await response.json()

    def handovers(self) -> list[dict[str, Any]]:
        return [p["handover"] for p in self.pops if p.get("phase") == "handover"]


@dataclass
class Rig:
    line: Helpline
    center: CallCenter
    desks: dict[str, Desk]
    base: str = ""

    @property
    def model(self) -> Any:
        return self.center.nodes["main"].node.model

    def paths(self) -> set[tuple[str, str]]:
        """Who hears whom, by sim endpoint (``carrier`` is her, Local halves folded)."""
        def endpoint(name: str) -> str:
            return name.split("/", 1)[1].rsplit("-", 1)[0]

        return {(endpoint(a), endpoint(b)) for a, b in self.line.sim.core.audio_paths()}

    def live(self, endpoint: str) -> bool:
        return any(n.startswith(f"PJSIP/{endpoint}-") for n in self.line.sim.core.channels)

    def her_call(self) -> LiveCall:
        calls = [c for c in self.model.calls.values()
                 if c.caller_channel.startswith("PJSIP/carrier-")]
        assert len(calls) == 1, calls
        return calls[0]

    async def answered_by(self, endpoint: str) -> LiveCall:
        """Her call once ``endpoint`` holds it (bridged with her)."""
        def held() -> bool:
            calls = [c for c in self.model.calls.values()
                     if c.caller_channel.startswith("PJSIP/carrier-")]
            return bool(calls) and any(
                (h := c.holder()) is not None and h.interface == f"PJSIP/{endpoint}"
                for c in calls
            )

        await until(held, within=30)
        return self.her_call()

    async def ring_in(self) -> Caller:
        await until(lambda: self.line.sim.core.db_get("wpl", "heartbeat") is not None)
        return self.line.call(TO_HINDI_DESK, talk_time=3600)

    def hang_up(self, channel: str) -> None:
        self.line.sim.core.remote_hangup(self.line.sim.core.channels[channel], 16)

    def events(self, name: str, **match: str) -> list[dict[str, str]]:
        return [e for e in self.line.named(name)
                if all(e.get(k) == v for k, v in match.items())]

    async def state(self, username: str) -> str:
        view = self.center.nodes["main"].agents.view(username)
        return "" if view is None else str(view.state)


async def _read_pops(ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]]) -> None:
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            data = json.loads(message.data)
            if data.get("type") == "pop":
                into.append(data["pop"])


@asynccontextmanager
async def rig(store: Store, *, staff: list[tuple[str, str, str, str, tuple[str, ...]]] = STAFF,
              consult_answer_after: float = 2.0, sign_in: bool = True) -> AsyncIterator[Rig]:
    agents = [SimAgent(endpoint, name, answer_after=consult_answer_after)
              for _, name, _, endpoint, _ in staff]
    async with helpline(store, agents) as line:
        vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
        center = CallCenter(backend_settings(line), vault=vault, instance_id="e2e")
        await center.start()
        runner = None
        sessions: list[aiohttp.ClientSession] = []
        desks: dict[str, Desk] = {}
        try:
            await until(lambda: center.nodes["main"].owning, within=10)
            await center.nodes["main"].node.synced.wait()
            for username, name, role, endpoint, skills in staff:
                await center.accounts.add(username, display_name=name, role=role,
                                          endpoint=f"PJSIP/{endpoint}", password=PASSWORD,
                                          skills=skills)
            port = free_port()
            runner = await serve_web(center, host="127.0.0.1", port=port, cookie_secure=False)
            base = f"http://127.0.0.1:{port}"
            for username, _, role, _, _ in staff if sign_in else ():
                http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
                sessions.append(http)
                signed = await http.post(f"{base}/api/session",
                                         json={"username": username, "password": PASSWORD})
                assert signed.status == 200, await signed.text()
                desk = Desk(username, http, base, (await signed.json())["csrf_token"])
                if role != "supervisor":
                    ws = await http.ws_connect(f"{base}/ws/console", origin=base)
                    desk.reader = asyncio.create_task(_read_pops(ws, desk.pops))
                    status, body = await desk.call("POST", "/api/me/login-queues")
                    assert status == 200, body
                desks[username] = desk
            yield Rig(line, center, desks, base)
        finally:
            for desk in desks.values():
                if desk.reader is not None:
                    desk.reader.cancel()
            for http in sessions:
                await http.close()
            if runner is not None:
                await runner.cleanup()
            await center.stop()


async def legs_of(rig_: Rig, linkedid: str, count: int) -> list[Any]:
    found: list[Any] = []

    async def enough() -> bool:
        found[:] = await rig_.center.recorder.legs("main", linkedid)
        return len(found) >= count

    async with asyncio.timeout(15):
        while not await enough():  # noqa: ASYNC110 - the rows are written by another task
            await asyncio.sleep(0.05)
    return found


# -- blind -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_blind_transfer_to_counselling_pops_the_case_and_records_both_legs(
    migrated_store: Store,
) -> None:
    async with rig(migrated_store) as r:
        await r.ring_in()
        call = await r.answered_by("agent1")
        asha, meera = r.desks["asha"], r.desks["meera"]
        status, body = await asha.call("POST", "/api/me/transfer", {
            "destination": "counselling", "kind": "blind",
            "note": "Distressed, talks of ending her life; needs a counsellor.",
        })
        assert status == 202, body
        await r.answered_by("agent2")
        await until(lambda: meera.handovers(), within=15)
        handover = meera.handovers()[0]
        assert handover["caller"] == call.label and handover["caller"].startswith("T-")
        assert handover["from_agent"] == "asha" and handover["kind"] == "blind"
        assert handover["category"] == call.variables.get("WPL_CATEGORY")
        assert list(handover["flags"]) == [
            f for f in call.variables.get("WPL_FLAGS", "").split(",") if f
        ]
        assert handover["notes"][-1].startswith("Distressed")
        assert not asha.handovers()  # the one handing on gets no pop of her own call

        # She is with the counsellor only; Asha's phone is off the call and in wrap-up.
        assert r.paths() == {("carrier", "agent2"), ("agent2", "carrier")}
        assert not r.live("agent1")
        await until_state(r, "asha", "wrap_up")

        # No silence: the counselling queue's music started with the transfer itself.
        caller = call.caller_channel
        transfer = r.events("BlindTransfer", TransfereeChannel=caller)[0]
        assert transfer["Result"] == "Success"
        music = [m for m in r.events("MusicOnHoldStart", Channel=caller)
                 if float(m["Timestamp"]) >= float(transfer["Timestamp"])]
        assert music, "she must hear the queue's music after the transfer"
        assert float(music[0]["Timestamp"]) - float(transfer["Timestamp"]) <= 0.5

        r.hang_up(caller)
        legs = await legs_of(r, call.linkedid, 2)
        assert [(leg.seq, leg.interface, leg.ended_how) for leg in legs] == [
            (1, "PJSIP/agent1", "transferred-blind"),
            (2, "PJSIP/agent2", "answered"),
        ]
        assert legs[0].until_at is not None and legs[1].from_at is not None
        assert legs[0].until_at <= legs[1].from_at
        audit = await r.center.audit.entries(subject=f"call:main:{call.linkedid}")
        states = [e.details.get("state") for e in audit if e.action == "call.transfer"]
        assert "requested" in states and "completed" in states


# -- warm ----------------------------------------------------------------------------------


async def _consulting(r: Rig) -> LiveCall:
    await r.ring_in()
    call = await r.answered_by("agent1")
    status, body = await r.desks["asha"].call("POST", "/api/me/transfer", {
        "destination": "agent:PJSIP/agent2", "kind": "warm", "note": "Wants a counsellor.",
    })
    assert status == 202, body
    # The consult: the two agents hear each other, she hears the hold music only.
    await until(lambda: r.paths() == {("agent1", "agent2"), ("agent2", "agent1")}, within=15)
    assert r.her_call().on_hold
    return call


@pytest.mark.timeout(120)
async def test_warm_transfer_completed_joins_her_with_the_counsellor(
    migrated_store: Store,
) -> None:
    async with rig(migrated_store) as r:
        call = await _consulting(r)
        await until(lambda: r.desks["meera"].handovers(), within=10)
        assert r.desks["meera"].handovers()[0]["kind"] == "warm"
        status, body = await r.desks["asha"].call("POST", "/api/me/transfer/complete")
        assert status == 200, body
        await until(lambda: r.paths() == {("carrier", "agent2"), ("agent2", "carrier")},
                    within=15)
        assert not r.live("agent1")
        assert not r.her_call().on_hold
        holder = r.her_call().holder()
        assert holder is not None and holder.interface == "PJSIP/agent2"
        # Completing again is refused with a code she can act on.
        status, body = await r.desks["asha"].call("POST", "/api/me/transfer/complete")
        assert (status, body["error"]["code"]) == (409, "no_consultation")
        r.hang_up(call.caller_channel)
        legs = await legs_of(r, call.linkedid, 2)
        assert [(leg.interface, leg.ended_how) for leg in legs] == [
            ("PJSIP/agent1", "transferred-warm"), ("PJSIP/agent2", "answered"),
        ]


@pytest.mark.timeout(120)
async def test_warm_transfer_cancelled_returns_her_to_the_first_agent(
    migrated_store: Store,
) -> None:
    async with rig(migrated_store) as r:
        call = await _consulting(r)
        status, body = await r.desks["asha"].call("POST", "/api/me/transfer/cancel")
        assert status == 200, body
        await until(lambda: r.paths() == {("carrier", "agent1"), ("agent1", "carrier")},
                    within=15)
        await until(lambda: not r.live("agent2"), within=10)
        assert not r.her_call().on_hold
        assert await r.state("asha") == "on_call"
        # Asha can hand her on again: the first transfer is over.
        status, body = await r.desks["asha"].call("POST", "/api/me/transfer", {
            "destination": "counselling", "kind": "blind"})
        assert status == 202, body
        await r.answered_by("agent2")
        r.hang_up(call.caller_channel)
        legs = await legs_of(r, call.linkedid, 2)
        # The consult she cancelled did not end Asha's leg: one leg each.
        assert [(leg.interface, leg.ended_how) for leg in legs] == [
            ("PJSIP/agent1", "transferred-blind"), ("PJSIP/agent2", "answered"),
        ]


@pytest.mark.timeout(120)
async def test_first_agent_hanging_up_mid_consult_leaves_her_with_the_counsellor(
    migrated_store: Store,
) -> None:
    async with rig(migrated_store) as r:
        call = await _consulting(r)
        asha_leg = next(n for n in r.line.sim.core.channels if n.startswith("PJSIP/agent1-"))
        r.hang_up(asha_leg)  # her phone drops: Asterisk completes the transfer
        await until(lambda: r.paths() == {("carrier", "agent2"), ("agent2", "carrier")},
                    within=15)
        assert r.line.sim.core.find_channel(call.caller_channel) is not None
        done = r.events("AttendedTransfer", Result="Success")
        assert done and done[-1]["DestType"] == "Bridge"
        await until_state(r, "asha", "wrap_up")
        await r.center.nodes["main"].extras["transfers"].settled()
        audit = await r.center.audit.entries(subject=f"call:main:{call.linkedid}")
        assert any(e.details.get("state") == "completed" for e in audit
                   if e.action == "call.transfer")


# -- conference ------------------------------------------------------------------------------


async def _conference(r: Rig) -> LiveCall:
    await r.ring_in()
    call = await r.answered_by("agent1")
    status, body = await r.desks["asha"].call("POST", "/api/me/transfer", {
        "destination": "agent:PJSIP/agent2", "kind": "conference"})
    assert status == 202, body
    everyone = {"carrier", "agent1", "agent2"}
    await until(lambda: r.paths() == {(a, b) for a in everyone for b in everyone if a != b},
                within=20)
    return call


@pytest.mark.timeout(120)
@pytest.mark.parametrize("order", [
    ("agent2", "carrier", "agent1"),
    ("agent1", "agent2", "carrier"),
    ("carrier", "agent1", "agent2"),
])
async def test_conference_parties_leave_in_turn_and_the_rest_stay_bridged(
    migrated_store: Store, order: tuple[str, str, str]
) -> None:
    async with rig(migrated_store) as r:
        call = await _conference(r)
        await until(lambda: r.desks["meera"].handovers(), within=10)
        assert r.desks["meera"].handovers()[0]["kind"] == "conference"
        # Asha is still talking in the room: no wrap-up for her yet.
        assert await r.state("asha") == "on_call"
        remaining = {"carrier", "agent1", "agent2"}
        first, second, _last = order
        for leaving in (first, second):
            channel = next(n for n in r.line.sim.core.channels
                           if n.startswith(f"PJSIP/{leaving}-"))
            r.hang_up(channel)
            remaining.discard(leaving)
            stay = {(a, b) for a in remaining for b in remaining if a != b}
            await until(lambda stay=stay: r.paths() == stay, within=15)
            for endpoint in remaining:
                assert r.live(endpoint), f"{endpoint} was dropped when {leaving} left"
            if "agent1" in remaining:
                assert await r.state("asha") == "on_call"
        # The last one is alone in the room; she leaves and the room is gone.
        last = next(iter(remaining))
        channel = next(n for n in r.line.sim.core.channels if n.startswith(f"PJSIP/{last}-"))
        r.hang_up(channel)
        await until(lambda: not any(n.startswith("PJSIP/") for n in r.line.sim.core.channels),
                    within=15)
        await until(lambda: r.line.named("ConfbridgeEnd"), within=10)
        await until_state(r, "asha", "wrap_up")
        # Her queue leg ended in the conference; in the room Asha and Meera held the call.
        legs = await legs_of(r, call.linkedid, 3)
        assert (legs[0].interface, legs[0].ended_how) == ("PJSIP/agent1", "conference")
        assert sorted(leg.interface for leg in legs[1:]) == ["PJSIP/agent1", "PJSIP/agent2"]


async def until_state(r: Rig, username: str, state: str, within: float = 15) -> None:
    async with asyncio.timeout(within):
        while await r.state(username) != state:  # noqa: ASYNC110 - the PBX moves her
            await asyncio.sleep(0.05)


# -- an instance that does not own the PBX ----------------------------------------------------


@pytest.mark.timeout(120)
async def test_transfer_and_supervision_from_the_non_owner_run_on_the_owner(
    migrated_store: Store, redis_url: str, redis_prefix: str
) -> None:
    from callcenter.agents.routing import OwnerRoutedTransfers
    from callcenter.agents.transfers import Handover, NoConsultation

    agents = [SimAgent(endpoint, name, answer_after=2.0) for _, name, _, endpoint, _ in STAFF]
    async with helpline(migrated_store, agents) as line:
        settings = backend_settings(line, redis_url, redis_prefix)
        vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
        owner = CallCenter(settings, vault=vault, instance_id="owner")
        other = CallCenter(settings, vault=vault, instance_id="other")
        await owner.start()
        await until(lambda: owner.nodes["main"].owning, within=10)
        await other.start()
        try:
            routers = []
            for center in (owner, other):
                runtime = center.nodes["main"]
                router = OwnerRoutedTransfers(
                    runtime.extras["transfers"], runtime.extras["supervision"], node="main",
                    owning=lambda runtime=runtime: runtime.owning, bus=center.bus,
                )
                await router.start()
                routers.append(router)
            routed = routers[1]
            assert not other.nodes["main"].owning
            for username, name, role, endpoint, skills in STAFF:
                await owner.accounts.add(username, display_name=name, role=role,
                                         endpoint=f"PJSIP/{endpoint}", password=PASSWORD,
                                         skills=skills)
            for username in ("asha", "meera"):
                await owner.nodes["main"].agents.login(username)
            r = Rig(line, owner, {})
            await r.ring_in()
            await r.answered_by("agent1")

            # A refusal keeps its type (and so its HTTP status) across the bus.
            with pytest.raises(NoConsultation):
                await routed.complete("asha")
            handover = await routed.blind("asha", "counselling", note="Needs a counsellor.")
            assert isinstance(handover, Handover) and handover.from_agent == "asha"
            await r.answered_by("agent2")
            assert r.paths() == {("carrier", "agent2"), ("agent2", "carrier")}

            assert routed.supervision is not None
            session = await routed.supervision.start("sunita", "meera", "barge")
            assert (session.agent, session.mode) == ("meera", "barge")
            await until(lambda: ("carrier", "agent9") in r.paths(), within=15)
            assert routed.supervision.session_of("sunita") is not None
            await routed.supervision.stop("sunita")
            await until(lambda: not r.live("agent9"), within=10)
            assert routed.supervision.session_of("sunita") is None
        finally:
            await other.stop()
            await owner.stop()
