"""Listen, whisper, barge over real AMI/TCP, every session audited.

The PBX is tests/support/fake_ami.py answering Originate / Redirect / Hangup and sending
OriginateResponse, ChanSpyStart/Stop and Hangup as Asterisk 22 does (manager.c,
app_chanspy.c). Accounts and the audit log live in SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher

from callcenter.agents.accounts import AccountService
from callcenter.agents.supervision import (
    AUDIT_END,
    AUDIT_MODE,
    AUDIT_START,
    AgentNotOnCall,
    AlreadySupervising,
    NoSession,
    NotASupervisor,
    SupervisionService,
    UnknownMode,
)
from callcenter.ami import AMIClient, Frame
from callcenter.ami.client import Backoff
from callcenter.cases.audit import AuditLog
from callcenter.pbx.node import PbxNode
from callcenter.store import Store
from tests.support.fake_ami import FakeAMIServer, FakeAMISession

CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
CALLER = "PJSIP/carrier-00000001"
AGENT1 = "PJSIP/agent1-00000002"
SPYER = "PJSIP/sup1-00000005"


async def until(predicate: Callable[[], object], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        # Polling: the node applies events in its own task, with no signal to wait on.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def channel(name: str, uniqueid: str, linkedid: str, prefix: str = "") -> dict[str, str]:
    return {
        f"{prefix}Channel": name, f"{prefix}ChannelState": "6", f"{prefix}Uniqueid": uniqueid,
        f"{prefix}Linkedid": linkedid, f"{prefix}CallerIDName": "",
    }


@dataclass
class Room:
    pbx: FakeAMIServer
    node: PbxNode
    audit: AuditLog
    service: SupervisionService
    answer: bool = True

    def event(self, name: str, **headers: str) -> None:
        self.pbx.send_event(name, headers)

    def agent_on_call(self) -> None:
        self.event("Newchannel", **channel(CALLER, "100.1", "100.1"))
        self.event("Newchannel", **channel(AGENT1, "100.2", "100.1"))
        for name, uid in ((CALLER, "100.1"), (AGENT1, "100.2")):
            self.event("BridgeEnter", **channel(name, uid, "100.1"), BridgeUniqueid="b1")

    async def rows(self) -> list[tuple[str, dict[str, object]]]:
        entries = await self.audit.entries(subject="agent:meera")
        return [(e.action, e.details) for e in reversed(entries)]


@asynccontextmanager
async def room(store: Store) -> AsyncIterator[Room]:
    async with FakeAMIServer() as pbx:
        client = AMIClient("127.0.0.1", pbx.port, pbx.username, pbx.secret, "md5",
                           ping_interval=None, backoff=Backoff(initial=0.01, maximum=0.05))
        node = PbxNode("pbx1", client)
        accounts = AccountService(store, hasher=CHEAP)
        for username, role, endpoint in (("meera", "agent", "PJSIP/agent1"),
                                         ("asha", "supervisor", "PJSIP/sup1"),
                                         ("rekha", "agent", "PJSIP/agent3")):
            await accounts.add(username, display_name=username.title(), role=role,
                               endpoint=endpoint, password="a long enough passphrase")
        audit = AuditLog(store)
        service = SupervisionService(node, accounts, audit)
        result = Room(pbx, node, audit, service)

        def originate(session: FakeAMISession, action: Frame) -> None:
            session.reply(action, "Success", [("Message", "Originate successfully queued")])
            if not result.answer:
                result.event("OriginateResponse", ActionID=action.action_id or "",
                             Response="Failure", Channel=action["Channel"] or "",
                             Reason="3", Uniqueid="<null>")
                return
            result.event("Newchannel", **channel(SPYER, "100.5", "100.5"))
            result.event("OriginateResponse", ActionID=action.action_id or "",
                         Response="Success", Channel=SPYER, Reason="4", Uniqueid="100.5")
            result.event("ChanSpyStart", **channel(SPYER, "100.5", "100.5", "Spyer"),
                         **channel(AGENT1, "100.2", "100.1", "Spyee"))

        def redirect(session: FakeAMISession, action: Frame) -> None:
            session.reply(action, "Success", [("Message", "Redirect successful")])
            # ChanSpy ends at the old extension and starts again at the new one.
            result.event("ChanSpyStop", **channel(SPYER, "100.5", "100.5", "Spyer"),
                         **channel(AGENT1, "100.2", "100.1", "Spyee"))
            result.event("ChanSpyStart", **channel(SPYER, "100.5", "100.5", "Spyer"),
                         **channel(AGENT1, "100.2", "100.1", "Spyee"))

        def hangup(session: FakeAMISession, action: Frame) -> None:
            session.reply(action, "Success", [("Message", "Channel Hungup")])
            result.event("Hangup", **channel(action["Channel"] or "", "100.5", "100.5"),
                         Cause="16")

        pbx.on_action("Originate", originate)
        pbx.on_action("Redirect", redirect)
        pbx.on_action("Hangup", hangup)
        async with client:
            await until(lambda: node.resyncs >= 1)
            yield result
            await service.settled()


async def test_listen_then_whisper_then_barge_then_stop_each_audited(
    migrated_store: Store,
) -> None:
    async with room(migrated_store) as r:
        r.agent_on_call()
        await until(lambda: "100.1" in r.node.model.calls
                    and r.node.model.calls["100.1"].holder() is not None)
        session = await r.service.start("asha", "meera", "listen")
        originate = r.pbx.actions("Originate")[-1]
        # Her own softphone is rung; ChanSpy runs on it once she answers.
        assert originate["Channel"] == "PJSIP/sup1"
        assert (originate["Context"], originate["Exten"]) == ("wpl-supervise", "listen")
        assert originate["Variable"] == f"WPL_SPY_TARGET={AGENT1}"
        await until(lambda: session.spying and session.channel == SPYER)

        for mode in ("whisper", "barge"):
            await r.service.switch("asha", mode)
            redirect = r.pbx.actions("Redirect")[-1]
            assert (redirect["Channel"], redirect["Context"], redirect["Exten"]) == (
                SPYER, "wpl-supervise", mode)
        assert r.service.session_of("asha").mode == "barge"  # type: ignore[union-attr]
        # Asking for the mode she is already in sends nothing.
        await r.service.switch("asha", "barge")
        assert len(r.pbx.actions("Redirect")) == 2

        await r.service.stop("asha")
        assert r.pbx.actions("Hangup")[-1]["Channel"] == SPYER
        await r.service.settled()
        assert r.service.session_of("asha") is None
        rows = await r.rows()
        assert [a for a, _ in rows] == [AUDIT_START, AUDIT_MODE, AUDIT_MODE, AUDIT_END]
        assert rows[0][1]["mode"] == "listen" and rows[0][1]["call"] == "pbx1:100.1"
        assert [(d["from"], d["to"]) for a, d in rows if a == AUDIT_MODE] == [
            ("listen", "whisper"), ("whisper", "barge")]
        # Ended once, by her, though the PBX also reported the hangup.
        assert rows[-1][1]["reason"] == "supervisor"
        assert all(e.actor == "asha" for e in await r.audit.entries(subject="agent:meera"))
        assert (await r.audit.verify()).ok


async def test_the_session_ends_when_the_call_does_and_is_audited(
    migrated_store: Store,
) -> None:
    async with room(migrated_store) as r:
        r.agent_on_call()
        await until(lambda: "100.1" in r.node.model.calls
                    and r.node.model.calls["100.1"].holder() is not None)
        session = await r.service.start("asha", "meera", "whisper")
        await until(lambda: session.spying)
        # ChanSpy's E option: the agent hangs up, ChanSpy ends, her leg hangs up.
        r.event("ChanSpyStop", **channel(SPYER, "100.5", "100.5", "Spyer"))
        r.event("Hangup", **channel(SPYER, "100.5", "100.5"), Cause="16")
        await until(lambda: r.service.session_of("asha") is None)
        await r.service.settled()
        rows = await r.rows()
        assert [(a, d.get("reason")) for a, d in rows] == [
            (AUDIT_START, None), (AUDIT_END, "hangup")]


async def test_a_supervisor_who_does_not_answer_leaves_a_start_and_an_end(
    migrated_store: Store,
) -> None:
    async with room(migrated_store) as r:
        r.answer = False
        r.agent_on_call()
        await until(lambda: "100.1" in r.node.model.calls
                    and r.node.model.calls["100.1"].holder() is not None)
        await r.service.start("asha", "meera", "listen")
        await until(lambda: r.service.session_of("asha") is None)
        await r.service.settled()
        rows = await r.rows()
        assert [(a, d.get("reason")) for a, d in rows] == [
            (AUDIT_START, None), (AUDIT_END, "not_answered")]


async def test_refusals(migrated_store: Store) -> None:
    async with room(migrated_store) as r:
        with pytest.raises(AgentNotOnCall):
            await r.service.start("asha", "meera", "listen")
        r.agent_on_call()
        await until(lambda: "100.1" in r.node.model.calls
                    and r.node.model.calls["100.1"].holder() is not None)
        with pytest.raises(NotASupervisor) as not_boss:
            await r.service.start("rekha", "meera", "listen")
        assert not_boss.value.code == "not_supervisor"
        with pytest.raises(UnknownMode):
            await r.service.start("asha", "meera", "record")
        with pytest.raises(NoSession):
            await r.service.switch("asha", "barge")
        await r.service.start("asha", "meera", "listen")
        with pytest.raises(AlreadySupervising):
            await r.service.start("asha", "meera", "barge")
        # Nothing was sent or audited for a refusal before the session.
        assert len(r.pbx.actions("Originate")) == 1
        assert [a for a, _ in await r.rows()] == [AUDIT_START]
