"""Transfers over real AMI/TCP: blind, warm (complete, cancel, agent drops), conference.

The PBX is tests/support/fake_ami.py, a loopback manager that answers the transfer actions
the way Asterisk 22 documents them (manager.c: BlindTransfer, Atxfer, CancelAtxfer,
Redirect with ExtraChannel; stasis_bridges.c: the BlindTransfer and AttendedTransfer
events; bridge_basic.c: a transferer hanging up mid-consult completes the transfer) and
then sends the bridge events the backend follows. Accounts, cases, consent and the audit
log live in a real store, SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from argon2 import PasswordHasher

from callcenter.agents.accounts import AccountService
from callcenter.agents.transfers import (
    AUDIT_HOLDER,
    AUDIT_TRANSFER,
    NoCallToTransfer,
    NoConsultation,
    PbxRefused,
    TransferInProgress,
    TransferService,
    UnknownDestination,
    load_transfer_settings,
)
from callcenter.ami import AMIClient, AMIParser, Frame
from callcenter.ami.client import Backoff
from callcenter.ami.encoder import encode_frame
from callcenter.cases.audit import AuditLog
from callcenter.cases.consent import ConsentService
from callcenter.cases.identities import IdentityStore
from callcenter.cases.models import ConsentScope
from callcenter.cases.service import CaseService, WrapUpForm
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.pbx import events as ev
from callcenter.pbx.calls import CallRecorder
from callcenter.pbx.node import PbxNode
from callcenter.store import Store
from tests.support.fake_ami import FakeAMIServer, FakeAMISession

CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
SETTINGS = load_transfer_settings("config/transfers.toml")
HER_NUMBER = "+919876543210"
CALLER = "PJSIP/carrier-00000001"
AGENT1 = "PJSIP/agent1-00000002"
AGENT2 = "PJSIP/agent2-00000003"


async def until(predicate: Callable[[], object], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        # Polling: the node applies events in its own task, with no signal to wait on.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def channel(name: str, uniqueid: str, linkedid: str, label: str = "",
            prefix: str = "") -> dict[str, str]:
    return {
        f"{prefix}Channel": name, f"{prefix}ChannelState": "6",
        f"{prefix}ChannelStateDesc": "Up",
        # What Asterisk would carry; the typed events must never copy it.
        f"{prefix}CallerIDNum": HER_NUMBER if name == CALLER else "1001",
        f"{prefix}CallerIDName": label, f"{prefix}Uniqueid": uniqueid,
        f"{prefix}Linkedid": linkedid, f"{prefix}Context": "wpl-inbound",
        f"{prefix}Exten": "1090",
    }


@dataclass
class Floor:
    pbx: FakeAMIServer
    node: PbxNode
    store: Store
    accounts: AccountService
    audit: AuditLog
    consent: ConsentService
    vault: Vault
    transfers: TransferService
    pops: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    clock: float = 1_800_000_000.0

    def event(self, name: str, **headers: str) -> None:
        self.clock += 1
        self.pbx.send_event(name, {**headers, "Timestamp": f"{self.clock:.6f}"})

    def enter(self, name: str, uniqueid: str, bridge: str, label: str = "") -> None:
        self.event("BridgeEnter", **channel(name, uniqueid, "100.1", label),
                   BridgeUniqueid=bridge)

    def leave(self, name: str, uniqueid: str, bridge: str, label: str = "") -> None:
        self.event("BridgeLeave", **channel(name, uniqueid, "100.1", label),
                   BridgeUniqueid=bridge)

    async def connected_call(self) -> None:
        """Her call answered by agent1 (queue wpl-general-hi), as app_queue reports it."""
        self.event("Newchannel", **channel(CALLER, "100.1", "100.1", "T-ABCD2345"))
        self.event("VarSet", **channel(CALLER, "100.1", "100.1", "T-ABCD2345"),
                   Variable="WPL_CATEGORY", Value="stalking")
        self.event("VarSet", **channel(CALLER, "100.1", "100.1", "T-ABCD2345"),
                   Variable="WPL_FLAGS", Value="danger,repeat")
        self.event("Newchannel", **channel(AGENT1, "100.2", "100.1"))
        self.enter(CALLER, "100.1", "bridge-1", "T-ABCD2345")
        self.enter(AGENT1, "100.2", "bridge-1")
        await until(lambda: (c := self.node.model.calls.get("100.1")) is not None
                    and c.holder() is not None)

    def actions(self, name: str) -> list[Frame]:
        return self.pbx.actions(name)


def ok(session: FakeAMISession, action: Frame) -> None:
    session.reply(action, "Success", [("Message", "Done")])


@asynccontextmanager
async def floor(store: Store) -> AsyncIterator[Floor]:
    async with FakeAMIServer() as pbx:
        client = AMIClient("127.0.0.1", pbx.port, pbx.username, pbx.secret, "md5",
                           ping_interval=None, backoff=Backoff(initial=0.01, maximum=0.05))
        node = PbxNode("pbx1", client, recorder=CallRecorder(store))
        accounts = AccountService(store, hasher=CHEAP)
        audit = AuditLog(store)
        vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
        consent = ConsentService(store, vault, audit)
        pops: list[tuple[str, dict[str, Any]]] = []

        async def publish(username: str, pop: dict[str, Any]) -> None:
            pops.append((username, pop))

        transfers = TransferService(node, accounts, store, audit, consent, vault, SETTINGS,
                                    publish=publish)
        for action in ("Setvar", "BlindTransfer", "Atxfer", "CancelAtxfer", "Hangup",
                       "Redirect", "Originate"):
            pbx.on_action(action, ok)
        for username, endpoint in (("meera", "PJSIP/agent1"), ("sunita", "PJSIP/agent2")):
            await accounts.add(username, display_name=username.title(), role="agent",
                               endpoint=endpoint, password="a long enough passphrase")
        async with client:
            await until(lambda: node.resyncs >= 1)
            yield Floor(pbx, node, store, accounts, audit, consent, vault, transfers, pops)
            await transfers.settled()
            await node.drain()


async def her_identity(f: Floor) -> int:
    """The IVR's part: her number vaulted, the call record carrying her identity."""
    entry = f.vault.admit_caller_id(HER_NUMBER)
    identity = await IdentityStore(f.store).remember(entry)
    await CallRecorder(f.store).ivr_started(
        "pbx1", "100.1", caller_uniqueid="100.1", identity_id=identity,
        token=entry.token.code, at=f.clock,
    )
    return identity


async def transfer_rows(f: Floor) -> list[dict[str, Any]]:
    return await f.transfers.recorded_custody("100.1")


async def test_blind_transfer_to_counselling_pops_the_case_and_records_both_holders(
    migrated_store: Store,
) -> None:
    async with floor(migrated_store) as f:
        await f.connected_call()
        identity = await her_identity(f)
        record = await CallRecorder(f.store).get("pbx1", "100.1")
        assert record is not None and record.caller_identity_id == identity
        cases = CaseService(f.store, f.vault, f.audit)
        case = await cases.create_from_wrapup(
            record, WrapUpForm(category="stalking", note="Follows her to college daily"),
            "meera",
        )

        def blind(session: FakeAMISession, action: Frame) -> None:
            ok(session, action)
            # stasis_bridges.c: the transferee leaves the bridge, goes to the dialplan.
            f.event("BlindTransfer", Result="Success",
                    **channel(AGENT1, "100.2", "100.1", prefix="Transferer"),
                    **channel(CALLER, "100.1", "100.1", "T-ABCD2345", prefix="Transferee"),
                    BridgeUniqueid="bridge-1", IsExternal="No",
                    Context=action["Context"] or "", Extension=action["Exten"] or "")
            f.leave(CALLER, "100.1", "bridge-1", "T-ABCD2345")
            f.leave(AGENT1, "100.2", "bridge-1")
            # app_queue in wpl-counselling rings and connects agent2.
            f.event("Newchannel", **channel(AGENT2, "100.3", "100.1"))
            f.event("AgentCalled", **channel(CALLER, "100.1", "100.1", "T-ABCD2345"),
                    **channel(AGENT2, "100.3", "100.1", prefix="Dest"),
                    Queue="wpl-counselling", Interface="PJSIP/agent2", MemberName="sunita")
            f.enter(CALLER, "100.1", "bridge-2", "T-ABCD2345")
            f.enter(AGENT2, "100.3", "bridge-2")

        f.pbx.on_action("BlindTransfer", blind)
        await f.transfers.blind(
            "meera", "counselling", note="Wants a counsellor; call 98765 43210 later",
        )
        sent = f.actions("BlindTransfer")[-1]
        assert (sent["Channel"], sent["Context"], sent["Exten"]) == (
            AGENT1, "wpl-transfer", "q-wpl-counselling")
        await until(lambda: len(f.transfers.custody("100.1")) == 2)
        await until(lambda: bool(f.pops))
        await f.transfers.settled()

        # The counsellor's console gets the case so far, and only hers.
        assert [u for u, _ in f.pops] == ["sunita"]
        shown = f.pops[0][1]["handover"]
        assert shown["caller"] == "T-ABCD2345"
        assert shown["category"] == "stalking"
        assert shown["flags"] == ("danger", "repeat")
        assert shown["case_reference"] == case.summary.reference
        assert shown["notes"][0] == "Follows her to college daily"
        # A number typed into the hand-over note never reaches her screen.
        assert "98765" not in shown["notes"][1] and "[number]" in shown["notes"][1]
        assert shown["from_agent"] == "meera" and shown["kind"] == "blind"
        assert HER_NUMBER not in repr(f.pops)
        # Who held the call when: agent1 until the transfer, then agent2.
        first, second = f.transfers.custody("100.1")
        assert first.interface == "PJSIP/agent1" and first.until is not None
        assert second.interface == "PJSIP/agent2" and second.until is None
        assert first.until <= second.since  # type: ignore[operator]
        rows = await transfer_rows(f)
        assert [(r["action"], r["details"].get("state")) for r in rows] == [
            (AUDIT_TRANSFER, "requested"), (AUDIT_TRANSFER, "completed"),
            (AUDIT_HOLDER, None),
        ]
        assert rows[-1]["details"]["interface"] == "PJSIP/agent2"
        assert (await f.audit.verify()).ok


@pytest.mark.parametrize("consent_to", [None, "police", "department:Some Other Office"])
async def test_external_destination_sees_her_number_only_under_her_consent(
    migrated_store: Store, consent_to: str | None, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with floor(migrated_store) as f:
        await f.connected_call()
        identity = await her_identity(f)
        if consent_to is not None:
            scope, _, department = consent_to.partition(":")
            await f.consent.record_consent(identity, ConsentScope(scope), recorded_by="meera",
                                           department=department or None)
        await f.transfers.blind("meera", "erss-112")
        presented = {a["Variable"]: a["Value"] for a in f.actions("Setvar")}
        sent = f.actions("BlindTransfer")[-1]
        assert (sent["Context"], sent["Exten"]) == ("wpl-external", "112")
        # Set on her channel, which runs the external dialplan after leaving the agent.
        assert {a["Channel"] for a in f.actions("Setvar")} == {CALLER}
        rows = await transfer_rows(f)
        shown = next(r["details"] for r in rows if r["details"]["state"] == "presentation")
        if consent_to == "police":
            assert presented["XFER_PRESENT_NUM"] == HER_NUMBER
            assert shown["presented"] == "her_number" and shown["consent_id"] is not None
        else:
            # No consent, or consent for another department: the helpline's number.
            assert presented["XFER_PRESENT_NUM"] == "1090"
            assert shown["presented"] == "helpline" and shown["consent_id"] is None
        # The number left only in the AMI action: not in the audit, not in any log line.
        assert HER_NUMBER not in repr(rows)
        assert "9876543210" not in caplog.text


async def test_department_consent_covers_only_that_department(migrated_store: Store) -> None:
    async with floor(migrated_store) as f:
        await f.connected_call()
        identity = await her_identity(f)
        await f.consent.record_consent(identity, ConsentScope.DEPARTMENT, recorded_by="meera",
                                       department="one stop centre  LUCKNOW")
        await f.transfers.warm("meera", "osc-lucknow")
        presented = {a["Variable"]: a["Value"] for a in f.actions("Setvar")}
        # Warm: the consult leg is dialled from the agent's channel and inherits it.
        assert presented["__XFER_PRESENT_NUM"] == HER_NUMBER
        assert {a["Channel"] for a in f.actions("Setvar")} == {AGENT1}


async def consult(f: Floor) -> None:
    """Atxfer: she hears hold music while agent1's new leg rings agent2."""
    await f.transfers.warm("meera", "agent:PJSIP/agent2", note="Needs legal advice")
    sent = f.actions("Atxfer")[-1]
    assert (sent["Channel"], sent["Context"], sent["Exten"]) == (
        AGENT1, "wpl-transfer", "a-agent2")
    f.event("MusicOnHoldStart", **channel(CALLER, "100.1", "100.1", "T-ABCD2345"),
            Class="default")
    f.event("Newchannel", **channel(AGENT2, "100.3", "100.1"))
    f.event("Newchannel", **channel("PJSIP/agent1-00000004", "100.4", "100.1"))
    f.enter("PJSIP/agent1-00000004", "100.4", "bridge-2")
    f.enter(AGENT2, "100.3", "bridge-2")
    await until(lambda: f.node.model.calls["100.1"].on_hold and bool(f.pops))


def attended_transfer(f: Floor) -> None:
    """bridge_basic.c completing: agent1 leaves, the bridges merge around the caller."""
    f.event("MusicOnHoldStop", **channel(CALLER, "100.1", "100.1", "T-ABCD2345"))
    f.leave(AGENT1, "100.2", "bridge-1")
    f.leave("PJSIP/agent1-00000004", "100.4", "bridge-2")
    f.event("AttendedTransfer", Result="Success",
            **channel(AGENT1, "100.2", "100.1", prefix="OrigTransferer"),
            **channel("PJSIP/agent1-00000004", "100.4", "100.1", prefix="SecondTransferer"),
            **channel(CALLER, "100.1", "100.1", "T-ABCD2345", prefix="Transferee"),
            OrigBridgeUniqueid="bridge-1", SecondBridgeUniqueid="bridge-2",
            DestType="Bridge", DestBridgeUniqueid="bridge-1")
    f.leave(AGENT2, "100.3", "bridge-2")
    f.enter(AGENT2, "100.3", "bridge-1")


async def test_warm_transfer_completed_leaves_her_with_the_counsellor(
    migrated_store: Store,
) -> None:
    async with floor(migrated_store) as f:
        await f.connected_call()
        await consult(f)
        # The consulted counsellor sees the case while still talking to agent1.
        assert [u for u, _ in f.pops] == ["sunita"]
        assert f.pops[0][1]["handover"]["notes"] == ("Needs legal advice",)

        def complete(session: FakeAMISession, action: Frame) -> None:
            ok(session, action)
            attended_transfer(f)

        f.pbx.on_action("Hangup", complete)
        await f.transfers.complete("meera")
        assert f.actions("Hangup")[-1]["Channel"] == AGENT1
        await until(lambda: f.node.model.calls["100.1"].holder() is not None
                    and f.node.model.calls["100.1"].holder().interface  # type: ignore[union-attr]
                    == "PJSIP/agent2")
        call = f.node.model.calls["100.1"]
        assert not call.on_hold
        assert [h.interface for h in call.holders] == ["PJSIP/agent1", "PJSIP/agent2"]
        await f.transfers.settled()
        states = [r["details"].get("state") for r in await transfer_rows(f)
                  if r["action"] == AUDIT_TRANSFER]
        assert states == ["requested", "completed"]
        # Completing twice is refused: there is no consult any more.
        with pytest.raises(NoConsultation):
            await f.transfers.complete("meera")


async def test_warm_transfer_cancelled_returns_her_to_the_first_agent(
    migrated_store: Store,
) -> None:
    async with floor(migrated_store) as f:
        await f.connected_call()
        await consult(f)

        def cancel(session: FakeAMISession, action: Frame) -> None:
            ok(session, action)
            f.leave(AGENT2, "100.3", "bridge-2")
            f.event("Hangup", **channel(AGENT2, "100.3", "100.1"), Cause="16")
            f.event("MusicOnHoldStop", **channel(CALLER, "100.1", "100.1", "T-ABCD2345"))

        f.pbx.on_action("CancelAtxfer", cancel)
        await f.transfers.cancel("meera")
        assert f.actions("CancelAtxfer")[-1]["Channel"] == AGENT1
        await until(lambda: not f.node.model.calls["100.1"].on_hold)
        call = f.node.model.calls["100.1"]
        assert [(h.interface, h.until) for h in call.holders] == [("PJSIP/agent1", None)]
        await f.transfers.settled()
        states = [r["details"].get("state") for r in await transfer_rows(f)]
        assert states == ["requested", "cancelled"]
        # Back with her, she may transfer again.
        await f.transfers.blind("meera", "counselling")


async def test_first_agent_hanging_up_mid_consult_does_not_drop_her(
    migrated_store: Store,
) -> None:
    async with floor(migrated_store) as f:
        await f.connected_call()
        await consult(f)
        # Her phone drops: no command from the console; Asterisk completes on its own.
        f.event("Hangup", **channel("PJSIP/agent1-00000004", "100.4", "100.1"), Cause="16")
        attended_transfer(f)
        f.event("Hangup", **channel(AGENT1, "100.2", "100.1"), Cause="16")
        await until(lambda: [h.interface for h in f.node.model.calls["100.1"].holders
                             if h.until is None] == ["PJSIP/agent2"])
        assert "100.1" in f.node.model.calls  # her leg is alive
        await f.transfers.settled()
        states = [r["details"].get("state") for r in await transfer_rows(f)
                  if r["action"] == AUDIT_TRANSFER]
        assert states == ["requested", "completed"]


async def test_conference_redirects_both_and_originates_the_third_party(
    migrated_store: Store,
) -> None:
    async with floor(migrated_store) as f:
        await f.connected_call()
        await f.transfers.conference("meera", "agent:PJSIP/agent2")
        redirect = f.actions("Redirect")[-1]
        assert (redirect["Channel"], redirect["ExtraChannel"]) == (CALLER, AGENT1)
        assert {redirect["Context"], redirect["ExtraContext"]} == {"wpl-conference"}
        assert redirect["Exten"] == redirect["ExtraExten"] == "c-100.1"
        originate = f.actions("Originate")[-1]
        assert originate["Channel"] == "Local/a-agent2@wpl-transfer"
        assert (originate["Context"], originate["Exten"]) == ("wpl-conference", "c-100.1")
        # ConfBridge: all three in one bridge; each leaves in turn, the rest stay.
        for name, uid in ((CALLER, "100.1"), (AGENT1, "100.2"), (AGENT2, "100.3")):
            f.enter(name, uid, "conf-1", "T-ABCD2345" if name == CALLER else "")
        await until(lambda: len([h for h in f.node.model.calls["100.1"].holders
                                 if h.until is None]) == 2)
        f.leave(AGENT1, "100.2", "conf-1")
        await until(lambda: [h.interface for h in f.node.model.calls["100.1"].holders
                             if h.until is None] == ["PJSIP/agent2"])
        await until(lambda: bool(f.pops))
        assert [u for u, _ in f.pops] == ["sunita"]


async def test_refusals_have_stable_codes(migrated_store: Store) -> None:
    async with floor(migrated_store) as f:
        with pytest.raises(NoCallToTransfer) as no_call:
            await f.transfers.blind("meera", "counselling")
        assert no_call.value.code == "no_call"
        await f.connected_call()
        with pytest.raises(UnknownDestination):
            await f.transfers.blind("meera", "nowhere")
        with pytest.raises(NoConsultation):
            await f.transfers.cancel("meera")
        await f.transfers.warm("meera", "counselling")
        with pytest.raises(TransferInProgress):
            await f.transfers.blind("meera", "counselling")

        def refuse(session: FakeAMISession, action: Frame) -> None:
            session.reply(action, "Error", [("Message", "Transferer not bridged")])

        f.pbx.on_action("CancelAtxfer", refuse)
        with pytest.raises(PbxRefused) as refused:
            await f.transfers.cancel("meera")
        assert refused.value.code == "pbx_refused"


async def test_a_refused_blind_transfer_is_recorded_and_frees_the_call(
    migrated_store: Store,
) -> None:
    async with floor(migrated_store) as f:
        await f.connected_call()

        def refuse(session: FakeAMISession, action: Frame) -> None:
            session.reply(action, "Error", [("Message", "No such channel")])

        f.pbx.on_action("BlindTransfer", refuse)
        with pytest.raises(PbxRefused):
            await f.transfers.blind("meera", "counselling")
        rows = await transfer_rows(f)
        assert [r["details"]["state"] for r in rows] == ["requested", "failed"]
        f.pbx.on_action("BlindTransfer", ok)
        await f.transfers.blind("meera", "counselling")  # not stuck "in progress"


def parse(name: str, headers: dict[str, str]) -> Frame:
    raw = encode_frame(("Event", name), list(headers.items()))
    return AMIParser(expect_banner=False).feed(raw)[0]


def test_transfer_and_spy_events_are_typed_without_numbers() -> None:
    blind = ev.typed_event("pbx1", parse("BlindTransfer", {
        "Result": "Success", **channel(AGENT1, "100.2", "100.1", prefix="Transferer"),
        **channel(CALLER, "100.1", "100.1", "T-ABCD2345", prefix="Transferee"),
        "BridgeUniqueid": "b1", "IsExternal": "No", "Context": "wpl-transfer",
        "Extension": "q-wpl-counselling"}))
    assert isinstance(blind, ev.BlindTransferred) and blind.succeeded
    assert blind.transferee.caller_name == "T-ABCD2345"
    assert (blind.context, blind.extension, blind.external) == (
        "wpl-transfer", "q-wpl-counselling", False)
    failed = ev.typed_event("pbx1", parse("AttendedTransfer", {
        "Result": "Not Permitted",
        **channel(AGENT1, "100.2", "100.1", prefix="OrigTransferer"),
        **channel("PJSIP/agent1-00000004", "100.4", "100.1", prefix="SecondTransferer"),
        "DestType": "Fail"}))
    assert isinstance(failed, ev.AttendedTransferred) and not failed.succeeded
    assert failed.transferee is None
    spy = ev.typed_event("pbx1", parse("ChanSpyStop", {
        **channel("PJSIP/sup1-00000009", "100.9", "100.9", prefix="Spyer")}))
    assert isinstance(spy, ev.SpyStopped) and spy.spyee is None
    for event in (blind, failed, spy):
        assert HER_NUMBER not in repr(event)


async def test_http_transfers_her_own_call_and_refuses_with_stable_codes(
    migrated_store: Store,
) -> None:
    import aiohttp
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import CollectorRegistry

    from callcenter.bus import InProcessBus
    from callcenter.web.app import make_app
    from callcenter.web.deps import StoreCallLookup, WebDeps
    from callcenter.web.transfers_http import TransferDeps
    from tests.support.web import MemoryAgentDirectory, sign_in, web_options

    async with floor(migrated_store) as f:
        deps = WebDeps(
            accounts=f.accounts, agents=MemoryAgentDirectory(),
            calls=StoreCallLookup(f.store), bus=InProcessBus(), store=f.store,
            transfers=TransferDeps(f.transfers), options=web_options(),
            registry=CollectorRegistry(),
        )
        client = TestClient(TestServer(make_app(deps), host="127.0.0.1"),
                            cookie_jar=aiohttp.CookieJar(unsafe=True))
        await client.start_server()
        try:
            csrf = {"X-CSRF-Token": await sign_in(client, "meera",
                                                  "a long enough passphrase")}
            listed = await client.get("/api/transfers/destinations")
            keys = [d["key"] for d in (await listed.json())["destinations"]]
            assert "counselling" in keys and "erss-112" in keys
            # Not on a call yet: 409 with the service's code.
            response = await client.post("/api/me/transfer", headers=csrf,
                                         json={"destination": "counselling"})
            assert response.status == 409
            assert (await response.json())["error"]["code"] == "no_call"
            await f.connected_call()
            # Without the CSRF header nothing is sent to the PBX.
            response = await client.post("/api/me/transfer",
                                         json={"destination": "counselling"})
            assert response.status == 403 and not f.actions("BlindTransfer")
            response = await client.post("/api/me/transfer", headers=csrf, json={
                "destination": "counselling", "kind": "blind", "note": "needs counselling"})
            assert response.status == 202, await response.text()
            body = await response.json()
            assert body["handover"]["caller"] == "T-ABCD2345"
            assert f.actions("BlindTransfer")[-1]["Channel"] == AGENT1
            response = await client.post("/api/me/transfer/complete", headers=csrf)
            assert response.status == 409
            assert (await response.json())["error"]["code"] == "no_consultation"
        finally:
            await client.close()
