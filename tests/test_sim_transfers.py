"""The simulator's transfers, three-way calls and conferences, driven over AMI/TCP.

What the simulator must do is read from Asterisk 22's source: main/manager.c
(BlindTransfer, Atxfer, CancelAtxfer, Redirect with ExtraChannel), main/bridge.c and
main/bridge_basic.c (blind and attended transfer), main/stasis_bridges.c (the
BlindTransfer / AttendedTransfer events), apps/app_confbridge.c (Confbridge* events).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcenter.ami.frame import Frame
from callcenter.sim import Endpoint, MemberConfig, PhoneBehaviour, QueueConfig, SimConfig, SimPBX
from callcenter.sim.clock import VirtualClock
from callcenter.sim.config import FeaturesConfig
from callcenter.sim.helpline import shipped_features
from tests.support.conformance import SimClient

DIALPLAN = r"""
[in]
exten => 1090,1,Answer()
 same => n,Queue(q,t,,,600)
 same => n,Hangup()
exten => 1091,1,Answer()
 same => n,Queue(counsel,t,,,600)
 same => n,Hangup()
exten => 1092,1,Answer()
 same => n,Queue(q,,,,600)
 same => n,Hangup()

[agents]
exten => 202,1,Dial(PJSIP/a2,20,t)
 same => n,Hangup()
exten => 203,1,Dial(PJSIP/a3,30)
 same => n,Hangup()

[conf]
exten => _9XX,1,ConfBridge(room${EXTEN})
 same => n,Hangup()
"""


def make_config(atxfer: str = "*2", **features: object) -> SimConfig:
    endpoints = [Endpoint("caller", "Her", "5550100", "in")]
    endpoints += [Endpoint(f"a{i}", f"Agent {i}", f"10{i}", "agents") for i in (1, 2, 3)]
    queues = [
        QueueConfig("q", members=[MemberConfig("PJSIP/a1", "Agent 1")]),
        QueueConfig("counsel", members=[MemberConfig("PJSIP/a2", "Agent 2")]),
    ]
    return SimConfig(
        endpoints=endpoints,
        queues=queues,
        dialplan=DIALPLAN,
        features=FeaturesConfig(atxfer=atxfer, **features),  # type: ignore[arg-type]
    )


@dataclass
class Lab:
    sim: SimPBX
    ami: SimClient

    def paths(self) -> set[tuple[str, str]]:
        """Audio paths by endpoint (``a1`` hears ``caller``), Local halves already folded."""
        return {
            (listener.split("/")[1].split("-")[0], speaker.split("/")[1].split("-")[0])
            for listener, speaker in self.sim.core.audio_paths()
        }

    def live(self, name: str) -> bool:
        return self.sim.core.find_channel(name) is not None

    def channel_of(self, endpoint: str) -> str:
        names = [n for n in self.sim.core.channels if n.startswith(f"PJSIP/{endpoint}-")]
        assert len(names) == 1, names
        return names[0]


async def start(config: SimConfig) -> Lab:
    sim = SimPBX(config, clock=VirtualClock())
    await sim.start(port=0)
    ami = await SimClient(sim).connect()
    await ami.login()
    return Lab(sim, ami)


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    labs: list[Lab] = []

    async def build() -> Lab:
        made = await start(make_config())
        labs.append(made)
        return made

    yield await build()
    for made in labs:
        await made.ami.close()
        await made.sim.stop()
        made.sim.clock.stop()  # type: ignore[attr-defined]


async def connected_call(lab: Lab, exten: str = "1090") -> tuple[str, str, Frame]:
    """A caller answered by agent a1: (caller channel, agent channel, AgentConnect)."""
    mark = len(lab.ami.frames)
    lab.sim.place_call("caller", exten)
    connect = await lab.ami.event("AgentConnect", start=mark)
    return connect["Channel"], connect["DestChannel"], connect


def after(lab: Lab, mark: int, name: str) -> list[Frame]:
    return [f for f in lab.ami.frames[mark:] if f.kind == "event" and f.name == name]


# -- blind transfer ------------------------------------------------------------------------


async def test_blind_transfer_to_the_counselling_queue(lab: Lab) -> None:
    caller, agent, connect = await connected_call(lab)
    bridge = (await lab.ami.event("BridgeEnter", Channel=caller))["BridgeUniqueid"]
    mark = len(lab.ami.frames)
    reply = await lab.ami.action("BlindTransfer", Channel=agent, Exten="1091", Context="in")
    assert (reply.name, reply["Message"]) == ("Success", "Transfer succeeded")
    event = await lab.ami.event("BlindTransfer", start=mark)
    assert event["Result"] == "Success"
    assert (event["TransfererChannel"], event["TransfereeChannel"]) == (agent, caller)
    assert (event["Context"], event["Extension"], event["IsExternal"]) == ("in", "1091", "No")
    assert event["BridgeUniqueid"] == bridge
    complete = await lab.ami.event("AgentComplete", start=mark, Queue="q")
    assert complete["Reason"] == "transfer"
    joined = await lab.ami.event("QueueCallerJoin", start=mark, Queue="counsel")
    assert joined["Channel"] == caller  # the same call leg: she was never dropped
    music = await lab.ami.event("MusicOnHoldStart", start=mark, Channel=caller)
    # no silence: the counselling queue's music starts at the instant of the transfer
    assert float(music["Timestamp"]) - float(event["Timestamp"]) < 0.5
    second = await lab.ami.event("AgentConnect", start=mark, Queue="counsel")
    assert second["Channel"] == caller and second["DestChannel"].startswith("PJSIP/a2-")
    assert not lab.live(agent)
    assert lab.paths() == {("caller", "a2"), ("a2", "caller")}
    hangups = [f["Channel"] for f in after(lab, mark, "Hangup")]
    assert caller not in hangups and agent in hangups


async def test_blind_transfer_refusals(lab: Lab) -> None:
    nosuch = await lab.ami.action("BlindTransfer", Channel="PJSIP/a9-00000009", Exten="1091")
    assert (nosuch.name, nosuch["Message"]) == ("Error", "Channel specified does not exist")
    noexten = await lab.ami.action("BlindTransfer", Channel="PJSIP/a1-00000000")
    assert noexten["Message"] == "No extension specified"
    # a caller still waiting in the queue is in no bridge: nothing to transfer
    lab.sim.core.phones["a1"] = PhoneBehaviour(answer_after=None)
    mark = len(lab.ami.frames)
    lab.sim.place_call("caller", "1090")
    caller = (await lab.ami.event("QueueCallerJoin", start=mark))["Channel"]
    invalid = await lab.ami.action("BlindTransfer", Channel=caller, Exten="1091", Context="in")
    assert (invalid.name, invalid["Message"]) == ("Error", "Transfer invalid")
    event = await lab.ami.event("BlindTransfer", start=mark)
    assert event["Result"] == "Invalid" and "TransfereeChannel" not in event
    assert lab.live(caller)


# -- attended transfer -------------------------------------------------------------------


async def consult(lab: Lab, agent: str, exten: str = "202") -> tuple[int, Frame]:
    """Atxfer from ``agent`` to ``exten``; returns once the target answered."""
    mark = len(lab.ami.frames)
    reply = await lab.ami.action("Atxfer", Channel=agent, Exten=exten, Context="agents")
    assert (reply.name, reply["Message"]) == ("Success", "Atxfer successfully queued")
    answered = await lab.ami.event("DialEnd", start=mark, DialStatus="ANSWER")
    return mark, answered


async def test_warm_transfer_completed_when_the_agent_hangs_up(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    bridge = (await lab.ami.event("BridgeEnter", Channel=caller))["BridgeUniqueid"]
    mark, answered = await consult(lab, agent)
    assert (await lab.ami.event("Hold", start=mark))["Channel"] == agent
    assert (await lab.ami.event("MusicOnHoldStart", start=mark))["Channel"] == caller
    local = (await lab.ami.event("VarSet", start=mark, Variable="ATTENDEDTRANSFER"))["Channel"]
    assert local.startswith("Local/202@agents-") and local.endswith(";1")
    target = answered["DestChannel"]
    assert target.startswith("PJSIP/a2-")
    # the consultation: the agents hear each other, she hears only the music
    assert lab.paths() == {("a1", "a2"), ("a2", "a1")}
    # the target sees who transfers, never the caller's number
    assert answered["CallerIDNum"] == "101"

    done = len(lab.ami.frames)
    await lab.ami.action("Hangup", Channel=agent)
    event = await lab.ami.event("AttendedTransfer", start=done)
    assert (event["Result"], event["DestType"]) == ("Success", "Bridge")
    assert event["DestBridgeUniqueid"] == bridge == event["OrigBridgeUniqueid"]
    assert event["OrigTransfererChannel"] == agent == event["SecondTransfererChannel"]
    assert event["TransfereeChannel"] == caller
    assert event["TransferTargetChannel"] == local
    assert (await lab.ami.event("MusicOnHoldStop", start=done))["Channel"] == caller
    assert (await lab.ami.event("AgentComplete", start=mark))["Reason"] == "transfer"
    await lab.ami.event("Hangup", start=done, Channel=agent)
    assert lab.live(caller)
    assert lab.paths() == {("caller", "a2"), ("a2", "caller")}
    # the counsellor ends the call: everything is torn down
    lab.sim.core.remote_hangup(lab.sim.core.channels[target], 16)
    await lab.ami.event("Hangup", start=done, Channel=caller)
    await lab.ami.event("BridgeDestroy", start=done, BridgeUniqueid=bridge)
    assert lab.sim.core.channels == {}


async def test_warm_transfer_cancelled_returns_the_agent_to_her(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    mark, answered = await consult(lab, agent)
    target = answered["DestChannel"]
    back = len(lab.ami.frames)
    reply = await lab.ami.action("CancelAtxfer", Channel=agent)
    assert (reply.name, reply["Message"]) == ("Success", "CancelAtxfer successfully queued")
    event = await lab.ami.event("AttendedTransfer", start=back)
    assert (event["Result"], event["DestType"]) == ("Fail", "Fail")
    assert (await lab.ami.event("Unhold", start=back))["Channel"] == agent
    assert (await lab.ami.event("MusicOnHoldStop", start=back))["Channel"] == caller
    await lab.ami.event("Hangup", start=back, Channel=target)
    assert lab.paths() == {("caller", "a1"), ("a1", "caller")}
    assert not after(lab, mark, "AgentComplete")  # a1 still has the call


async def test_warm_transfer_target_hanging_up_rebridges(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    _, answered = await consult(lab, agent)
    back = len(lab.ami.frames)
    lab.sim.core.remote_hangup(lab.sim.core.channels[answered["DestChannel"]], 16)
    event = await lab.ami.event("AttendedTransfer", start=back)
    assert event["Result"] == "Fail"
    await lab.ami.event("MusicOnHoldStop", start=back, Channel=caller)
    assert lab.paths() == {("caller", "a1"), ("a1", "caller")}


async def test_agent_hanging_up_while_the_target_rings_does_not_drop_her(lab: Lab) -> None:
    lab.sim.core.phones["a2"] = PhoneBehaviour(answer_after=6.0)
    caller, agent, _ = await connected_call(lab)
    mark = len(lab.ami.frames)
    await lab.ami.action("Atxfer", Channel=agent, Exten="202", Context="agents")
    target = (await lab.ami.event("DialBegin", start=mark))["DestChannel"]
    await lab.ami.action("Hangup", Channel=agent)
    event = await lab.ami.event("AttendedTransfer", start=mark)
    assert (event["Result"], event["DestType"]) == ("Success", "Bridge")
    await lab.ami.event("DialEnd", start=mark, DestChannel=target, DialStatus="ANSWER")
    assert lab.live(caller) and not lab.live(agent)
    assert lab.paths() == {("caller", "a2"), ("a2", "caller")}


async def test_unanswered_target_is_abandoned_after_atxfernoanswertimeout(lab: Lab) -> None:
    lab.sim.core.phones["a3"] = PhoneBehaviour(answer_after=None)
    caller, agent, _ = await connected_call(lab)
    mark = len(lab.ami.frames)
    await lab.ami.action("Atxfer", Channel=agent, Exten="203", Context="agents")
    rang = await lab.ami.event("DialBegin", start=mark)
    event = await lab.ami.event("AttendedTransfer", start=mark)
    assert event["Result"] == "Fail"
    waited = float(event["Timestamp"]) - float(rang["Timestamp"])
    assert 14.0 <= waited <= 16.0  # features.conf atxfernoanswertimeout=15 (simulated s)
    assert lab.paths() == {("caller", "a1"), ("a1", "caller")}


async def test_atxfer_needs_a_feature_code_and_the_t_option() -> None:
    bare = await start(make_config(atxfer=""))
    try:
        _, agent, _ = await connected_call(bare)
        reply = await bare.ami.action("Atxfer", Channel=agent, Exten="202")
        assert reply.name == "Error"
        assert reply["Message"] == "No attended transfer feature code found"
    finally:
        await bare.ami.close()
        await bare.sim.stop()
        bare.sim.clock.stop()  # type: ignore[attr-defined]
    lab = await start(make_config())
    try:
        caller, agent, _ = await connected_call(lab, exten="1092")  # Queue() without t
        mark = len(lab.ami.frames)
        reply = await lab.ami.action("Atxfer", Channel=agent, Exten="202")
        assert reply["Message"] == "Atxfer successfully queued"
        await lab.ami.wait_for(lambda _: len(after(lab, mark, "DTMFEnd")) >= 5, start=mark)
        await lab.sim.clock.sleep(1.0)
        digits = [f["Digit"] for f in after(lab, mark, "DTMFEnd")]
        assert "".join(digits) == "*2202"  # only DTMF: the bridge gives her no transfer
        assert not after(lab, mark, "Hold") and not after(lab, mark, "AttendedTransfer")
        assert lab.paths() == {("caller", "a1"), ("a1", "caller")}
    finally:
        await lab.ami.close()
        await lab.sim.stop()
        lab.sim.clock.stop()  # type: ignore[attr-defined]


# -- three-way calls and conferences -------------------------------------------------------


async def test_threeway_feature_keeps_the_others_bridged_as_each_leaves(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    _, answered = await consult(lab, agent)
    target = answered["DestChannel"]
    mark = len(lab.ami.frames)
    await lab.sim.core.send_dtmf(lab.sim.core.channels[agent], "*3")
    event = await lab.ami.event("AttendedTransfer", start=mark)
    assert (event["DestType"], event["DestTransfererChannel"]) == ("Threeway", agent)
    everyone = {"caller", "a1", "a2"}
    assert lab.paths() == {(x, y) for x in everyone for y in everyone if x != y}
    # the counsellor leaves: caller and agent stay together
    lab.sim.core.remote_hangup(lab.sim.core.channels[target], 16)
    await lab.ami.event("Hangup", start=mark, Channel=target)
    await lab.ami.event("Hangup", start=mark, Channel=event["TransferTargetChannel"])
    assert lab.paths() == {("caller", "a1"), ("a1", "caller")}
    # the agent leaves: the caller is the last one, and the bridge dissolves
    await lab.ami.action("Hangup", Channel=agent)
    await lab.ami.event("Hangup", start=mark, Channel=caller)
    assert lab.sim.core.channels == {}


async def test_caller_leaving_a_threeway_call_leaves_the_other_two(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    _, answered = await consult(lab, agent)
    mark = len(lab.ami.frames)
    await lab.sim.core.send_dtmf(lab.sim.core.channels[agent], "*3")
    await lab.ami.event("AttendedTransfer", start=mark)
    await lab.ami.action("Hangup", Channel=caller)
    await lab.ami.event("Hangup", start=mark, Channel=caller)
    assert lab.paths() == {("a1", "a2"), ("a2", "a1")}
    lab.sim.core.remote_hangup(lab.sim.core.channels[agent], 16)
    await lab.ami.event("Hangup", start=mark, Channel=answered["DestChannel"])
    assert lab.sim.core.channels == {}


async def test_conference_by_dual_redirect_and_each_party_leaving(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    mark = len(lab.ami.frames)
    reply = await lab.ami.action(
        "Redirect", Channel=caller, ExtraChannel=agent, Context="conf", Exten="901",
        Priority="1", ExtraContext="conf", ExtraExten="901", ExtraPriority="1",
    )
    assert (reply.name, reply["Message"]) == ("Success", "Dual Redirect successful")
    start_ = await lab.ami.event("ConfbridgeStart", start=mark)
    assert (start_["Conference"], start_["BridgeCreator"], start_["BridgeName"]) == (
        "room901", "ConfBridge", "room901"
    )
    await lab.ami.event("ConfbridgeJoin", start=mark, Channel=caller)
    await lab.ami.event("ConfbridgeJoin", start=mark, Channel=agent)
    # the third party is rung straight into the room
    await lab.ami.action(
        "Originate", Channel="PJSIP/a3", Context="conf", Exten="901", Priority="1", Async="true"
    )
    third = (await lab.ami.event("ConfbridgeJoin", start=mark, Exten="901",
                                 CallerIDNum="103"))["Channel"]
    assert not [f for f in after(lab, mark, "Hangup") if f["Channel"] in (caller, agent)]
    everyone = {"caller", "a1", "a3"}
    assert lab.paths() == {(x, y) for x in everyone for y in everyone if x != y}
    assert (await lab.ami.event("AgentComplete", start=mark))["Queue"] == "q"

    await lab.ami.action("Hangup", Channel=caller)
    await lab.ami.event("ConfbridgeLeave", start=mark, Channel=caller)
    assert lab.paths() == {("a1", "a3"), ("a3", "a1")}
    await lab.ami.action("Hangup", Channel=third)
    await lab.ami.event("ConfbridgeLeave", start=mark, Channel=third)
    assert lab.sim.core.conferences.members("room901") == [agent]
    assert not after(lab, mark, "ConfbridgeEnd")
    await lab.ami.action("Hangup", Channel=agent)
    end = await lab.ami.event("ConfbridgeEnd", start=mark)
    assert end["Conference"] == "room901"
    await lab.ami.event("Hangup", start=mark, Channel=agent)
    assert lab.sim.core.channels == {}


async def test_single_redirect_of_a_bridged_agent_dissolves_the_bridge(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    mark = len(lab.ami.frames)
    reply = await lab.ami.action("Redirect", Channel=agent, Context="conf", Exten="902",
                                 Priority="1")
    assert reply["Message"] == "Redirect successful"
    await lab.ami.event("ConfbridgeJoin", start=mark, Channel=agent)
    await lab.ami.event("Hangup", start=mark, Channel=caller)  # alone in a two-party bridge
    assert lab.live(agent)
    bad = await lab.ami.action("Redirect", Channel=agent, ExtraChannel="PJSIP/x-1",
                               Context="conf", Exten="902", Priority="1")
    assert (bad.name, bad["Message"]) == ("Error", "ExtraChannel does not exist: PJSIP/x-1")
    worse = await lab.ami.action("Redirect", Channel=agent, Context="conf", Exten="902",
                                 Priority="nolabel")
    assert worse["Message"] == "Priority is invalid"


async def test_unanswered_blond_transfer_calls_the_agent_back(lab: Lab) -> None:
    # atxferdropcall=no: the caller is not dropped when nobody takes the transfer
    lab.sim.core.phones["a3"] = PhoneBehaviour(answer_after=None)
    caller, agent, _ = await connected_call(lab)
    mark = len(lab.ami.frames)
    await lab.ami.action("Atxfer", Channel=agent, Exten="203", Context="agents")
    await lab.ami.event("DialBegin", start=mark)
    await lab.ami.action("Hangup", Channel=agent)
    blond = await lab.ami.event("AttendedTransfer", start=mark)
    assert blond["Result"] == "Success"
    recall = await lab.ami.wait_for(
        lambda f: f.name == "DialBegin" and f.get("DestChannel", "").startswith("PJSIP/a1-"),
        start=mark,
    )
    waited = float(recall["Timestamp"]) - float(blond["Timestamp"])
    assert 14.0 <= waited <= 16.0  # atxfernoanswertimeout of ringing the target first
    await lab.ami.event("DialEnd", start=mark, DestChannel=recall["DestChannel"],
                        DialStatus="ANSWER")
    assert lab.live(caller)
    assert lab.paths() == {("caller", "a1"), ("a1", "caller")}


async def test_third_party_joins_the_room_through_a_local_channel(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    mark = len(lab.ami.frames)
    await lab.ami.action(
        "Redirect", Channel=agent, ExtraChannel=caller, Context="conf", Exten="903",
        Priority="1", ExtraContext="conf", ExtraExten="903", ExtraPriority="1",
    )
    await lab.ami.event("ConfbridgeJoin", start=mark, Channel=agent)
    await lab.ami.event("ConfbridgeJoin", start=mark, Channel=caller)
    # Local/203@agents dials a3; its ;1 half joins the room once a3 answered
    reply = await lab.ami.action(
        "Originate", Channel="Local/203@agents", Context="conf", Exten="903", Priority="1",
        Async="true", CallerID='"Helpline" <1090>',
    )
    assert reply.name == "Success"
    origin = await lab.ami.event("OriginateResponse", start=mark)
    assert origin["Response"] == "Success"
    joined = await lab.ami.event("ConfbridgeJoin", start=mark, Channel=origin["Channel"])
    assert joined["Conference"] == "room903"
    everyone = {"caller", "a1", "a3"}
    assert lab.paths() == {(x, y) for x in everyone for y in everyone if x != y}


def test_features_conf_as_shipped(tmp_path: Path) -> None:
    conf = tmp_path / "features.conf"
    conf.write_text(
        "[general]\natxfernoanswertimeout = 20\natxferdropcall = yes\natxferabort = *9\n\n"
        "[featuremap]\natxfer => *2\nblindxfer => #1\n"
    )
    features = shipped_features(conf)
    assert (features.atxfer, features.blindxfer, features.atxferabort) == ("*2", "#1", "*9")
    assert (features.atxfernoanswertimeout, features.atxferdropcall) == (20.0, True)
    # nothing shipped: Asterisk's defaults, with no attended transfer code
    assert shipped_features(tmp_path / "missing.conf") == FeaturesConfig()
    assert FeaturesConfig().atxfer == ""


async def test_atxfer_to_a_missing_extension_puts_her_back(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    mark = len(lab.ami.frames)
    reply = await lab.ami.action("Atxfer", Channel=agent, Exten="299", Context="agents")
    assert reply["Message"] == "Atxfer successfully queued"  # queued DTMF: no verdict here
    await lab.ami.event("Unhold", start=mark, Channel=agent)
    await lab.ami.event("MusicOnHoldStop", start=mark, Channel=caller)
    assert not after(lab, mark, "AttendedTransfer") and not after(lab, mark, "LocalBridge")
    assert lab.paths() == {("caller", "a1"), ("a1", "caller")}
