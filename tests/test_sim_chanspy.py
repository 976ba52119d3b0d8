"""The simulator's ChanSpy: listen, whisper and barge, and who hears whom in each.

Modelled from apps/app_chanspy.c (options q, w, W, B, d, E, S, u, o; the
ChanSpyStart / ChanSpyStop events); the supervisor's phone is rung by AMI
Originate, either straight into ChanSpy (Application/Data) or into a dialplan
extension that runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callcenter.sim import Endpoint, MemberConfig, QueueConfig, SimConfig, SimPBX
from callcenter.sim.channels import Channel
from callcenter.sim.clock import VirtualClock
from tests.support.conformance import SimClient
from tests.test_sim_transfers import Lab, connected_call

DIALPLAN = r"""
[in]
exten => 1090,1,Answer()
 same => n,Queue(q,t,,,600)
 same => n,Hangup()

[supervise]
exten => listen,1,ChanSpy(${SPYTARGET},quES)
 same => n,Hangup()
exten => whisper,1,ChanSpy(${SPYTARGET},quESw)
 same => n,Hangup()
"""

EVERYONE_TALKS = {("caller", "a1"), ("a1", "caller")}


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    config = SimConfig(
        endpoints=[
            Endpoint("caller", "Her", "5550100", "in"),
            Endpoint("a1", "Agent 1", "101", "agents"),
            Endpoint("a10", "Agent 10", "110", "agents"),
            Endpoint("sup", "Supervisor", "200", "supervise"),
        ],
        queues=[QueueConfig("q", members=[MemberConfig("PJSIP/a1", "Agent 1")])],
        dialplan=DIALPLAN,
    )
    sim = SimPBX(config, clock=VirtualClock())
    await sim.start(port=0)
    ami = await SimClient(sim).connect()
    await ami.login()
    yield Lab(sim, ami)
    await ami.close()
    await sim.stop()
    sim.clock.stop()  # type: ignore[attr-defined]


async def press(lab: Lab, phone: Channel, digits: str) -> None:
    """Her phone sends RFC 4733 digits; ChanSpy reads them a moment later."""
    await lab.sim.core.send_dtmf(phone, digits)
    await lab.sim.clock.sleep(0.5)


async def spy(lab: Lab, data: str) -> tuple[int, str]:
    """Ring the supervisor into ChanSpy(data); returns (frame mark, her channel)."""
    mark = len(lab.ami.frames)
    reply = await lab.ami.action(
        "Originate", Channel="PJSIP/sup", Application="ChanSpy", Data=data, Async="true"
    )
    assert reply.name == "Success"
    started = await lab.ami.event("ChanSpyStart", start=mark)
    return mark, started["SpyerChannel"]


@pytest.mark.parametrize(
    ("options", "extra"),
    [
        ("qE", set()),  # listen: nobody hears her
        ("qEw", {("a1", "sup")}),  # whisper: only the agent hears her
        ("qEB", {("a1", "sup"), ("caller", "sup")}),  # barge: both do
        ("qEW", {("a1", "sup")}),  # private whisper: she hears nothing
    ],
)
async def test_modes_give_the_audio_paths_app_chanspy_gives(
    lab: Lab, options: str, extra: set[tuple[str, str]]
) -> None:
    caller, agent, _ = await connected_call(lab)
    mark, sup = await spy(lab, f"PJSIP/a1-,{options}")
    started = await lab.ami.event("ChanSpyStart", start=mark)
    assert (started["SpyerChannel"], started["SpyeeChannel"]) == (sup, agent)
    assert started["SpyeeUniqueid"] == lab.sim.core.channels[agent].uniqueid
    hears = set() if "W" in options else {("sup", "a1"), ("sup", "caller")}
    assert lab.paths() == EVERYONE_TALKS | hears | extra


async def test_dtmf_switches_modes_and_agent_hangup_ends_the_session(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    mark, sup = await spy(lab, "PJSIP/a1-,qdE")
    phone = lab.sim.core.channels[sup]
    assert ("a1", "sup") not in lab.paths()
    await press(lab, phone, "5")
    assert ("a1", "sup") in lab.paths() and ("caller", "sup") not in lab.paths()
    await press(lab, phone, "6")
    assert {("a1", "sup"), ("caller", "sup")} <= lab.paths()
    await press(lab, phone, "4")
    assert lab.paths() == EVERYONE_TALKS | {("sup", "a1"), ("sup", "caller")}
    await lab.ami.action("Hangup", Channel=agent)
    stop = await lab.ami.event("ChanSpyStop", start=mark)
    assert (stop["SpyerChannel"], stop["SpyeeChannel"]) == (sup, agent)
    await lab.ami.event("Hangup", start=mark, Channel=sup)  # E: the session ends with her
    assert not lab.live(caller)


async def test_prefix_u_option_and_nothing_to_spy_on(lab: Lab) -> None:
    # S: nothing matches, so ChanSpy ends at once and her phone is hung up
    mark = len(lab.ami.frames)
    await lab.ami.action(
        "Originate", Channel="PJSIP/sup", Application="ChanSpy", Data="PJSIP/a1-,qS",
        Async="true",
    )
    hangup = await lab.ami.event("Hangup", start=mark)
    assert hangup["Channel"].startswith("PJSIP/sup-")
    assert not [f for f in lab.ami.frames[mark:] if f.kind == "event" and f.name == "ChanSpyStart"]
    # u: the full channel name, never a channel whose name merely starts like it
    lab.sim.place_call("caller", "1090")
    agent = (await lab.ami.event("AgentConnect", start=mark))["DestChannel"]
    other = lab.sim.core.inbound_call("a10", "1090")  # PJSIP/a10-... also starts with PJSIP/a1
    assert other.name.startswith("PJSIP/a1")
    begin, _ = await spy(lab, f"{agent},quE")
    started = await lab.ami.event("ChanSpyStart", start=begin)
    assert started["SpyeeChannel"] == agent


async def test_redirect_to_another_mode_restarts_chanspy_on_the_same_agent(lab: Lab) -> None:
    caller, agent, _ = await connected_call(lab)
    mark = len(lab.ami.frames)
    await lab.ami.action(
        "Originate", Channel="PJSIP/sup", Context="supervise", Exten="listen", Priority="1",
        Variable=f"SPYTARGET={agent}", Async="true",
    )
    first = await lab.ami.event("ChanSpyStart", start=mark)
    sup = first["SpyerChannel"]
    assert ("a1", "sup") not in lab.paths()
    switch = len(lab.ami.frames)
    reply = await lab.ami.action("Redirect", Channel=sup, Context="supervise", Exten="whisper",
                                 Priority="1")
    assert reply["Message"] == "Redirect successful"
    await lab.ami.event("ChanSpyStop", start=switch, SpyerChannel=sup)
    again = await lab.ami.event("ChanSpyStart", start=switch)
    assert (again["SpyerChannel"], again["SpyeeChannel"]) == (sup, agent)
    assert ("a1", "sup") in lab.paths() and ("caller", "sup") not in lab.paths()
    assert lab.live(sup) and lab.live(caller)
