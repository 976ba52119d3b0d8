"""The simulator's AMI server: login, sessions, filters and replies not covered by the traces."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from callcenter.sim import ManagerUser, SimPBX, lab_config
from callcenter.sim.clock import VirtualClock
from callcenter.sim.filters import EventFilter
from tests.support.conformance import SimClient


@pytest.fixture
async def sim() -> AsyncIterator[SimPBX]:
    config = lab_config(
        users=[
            ManagerUser("lab", "labsecret"),
            ManagerUser(
                "wallboard", "wb", eventfilters=["Event: QueueMember", "!Event: QueueMemberPenalty"]
            ),
        ]
    )
    pbx = SimPBX(config, clock=VirtualClock())
    await pbx.start(port=0)
    yield pbx
    await pbx.stop()
    pbx.clock.stop()  # type: ignore[attr-defined]


async def client(sim: SimPBX) -> SimClient:
    return await SimClient(sim).connect()


async def test_banner_is_one_line_then_plain_login(sim: SimPBX) -> None:
    c = await client(sim)
    reply = await c.login()
    assert c.frames[0].kind == "banner" and c.frames[0].name == "Asterisk Call Manager/11.0.0"
    assert (reply.name, reply["Message"]) == ("Success", "Authentication accepted")
    booted = await c.event("FullyBooted")
    assert "Timestamp" not in booted
    assert (await c.event("SuccessfulAuth"))["AccountID"] == "lab"
    again = await c.action("Login", Username="lab", Secret="not-checked")
    assert (again.name, again["Message"]) == ("Success", "Already authenticated")


async def test_md5_challenge_login(sim: SimPBX) -> None:
    c = await client(sim)
    challenge = (await c.action("Challenge", AuthType="MD5"))["Challenge"]
    key = hashlib.md5((challenge + "labsecret").encode()).hexdigest()
    reply = await c.action("Login", AuthType="MD5", Username="lab", Key=key)
    assert reply["Message"] == "Authentication accepted"


async def test_wrong_secret_fails_after_a_second_and_closes(sim: SimPBX) -> None:
    c = await client(sim)
    before = sim.clock.now()
    reply = await c.login(secret="wrong")
    assert (reply.name, reply["Message"]) == ("Error", "Authentication failed")
    assert sim.clock.now() - before >= 1.0  # simulated seconds, not wall clock
    with pytest.raises(ConnectionError):
        await c.wait_for(lambda f: False)


async def test_actions_before_login_are_refused(sim: SimPBX) -> None:
    c = await client(sim)
    reply = await c.action("CoreStatus")
    assert (reply.name, reply["Message"]) == ("Error", "Permission denied")


async def test_unknown_action_error_and_security_event(sim: SimPBX) -> None:
    c = await client(sim)
    await c.login()
    reply = await c.action("FooBarBaz")
    assert reply.name == "Error"
    assert (
        reply["Message"] == "Invalid/unknown command: FooBarBaz. "
        "Use Action: ListCommands to show available commands."
    )
    bad = await c.event("RequestBadFormat")
    assert bad["RequestType"] == "Action: FooBarBaz"


async def test_events_off_silences_the_session_until_on(sim: SimPBX) -> None:
    c = await client(sim)
    await c.login()
    assert (await c.action("Events", EventMask="off"))["Events"] == "Off"
    mark = len(c.frames)
    await c.action(
        "QueuePause", Queue="counselors", Interface="PJSIP/agent1", Paused="true", Reason="tea"
    )
    assert not [f for f in c.frames[mark:] if f.kind == "event"]
    assert (await c.action("Events", EventMask="on"))["Events"] == "On"
    await c.action("QueuePause", Queue="counselors", Interface="PJSIP/agent1", Paused="false")
    assert (await c.event("QueueMemberPause", start=mark))["Paused"] == "0"


async def test_eventfilter_include_and_exclude(sim: SimPBX) -> None:
    wallboard = await client(sim)
    await wallboard.login("wallboard", "wb")
    admin = await client(sim)
    await admin.login()
    await admin.action("QueuePenalty", Queue="counselors", Interface="PJSIP/agent2", Penalty="2")
    await admin.action("QueuePause", Queue="counselors", Interface="PJSIP/agent2", Paused="true")
    await admin.action(
        "Originate",
        Channel="PJSIP/agent1",
        Context="lab-agents",
        Exten="700",
        Priority="1",
        Async="true",
    )
    await admin.event("OriginateResponse")
    await wallboard.event("QueueMemberPause")
    # FullyBooted is written straight to the session at login (it has no
    # Timestamp either), so no filter applies to it
    names = {f.name for f in wallboard.frames if f.kind == "event"} - {"FullyBooted"}
    # include filter: only QueueMember* passes; the exclude removes the penalty
    # change; OriginateResponse is dropped like any other event
    assert names <= {"QueueMemberPause", "QueueMemberStatus"}
    assert "QueueMemberPause" in names


def test_eventfilter_rules() -> None:
    assert EventFilter().passes("Event: Hangup\r\n")
    only_excludes = EventFilter.from_lines(["!Event: VarSet"])
    assert only_excludes.passes("Event: Hangup\r\n") and not only_excludes.passes(
        "Event: VarSet\r\n"
    )
    includes = EventFilter.from_lines(["Event: Agent"])
    assert not includes.passes("Event: OriginateResponse\r\n")
    assert includes.passes("Event: AgentCalled\r\n")


async def test_astdb_and_variables(sim: SimPBX) -> None:
    c = await client(sim)
    await c.login()
    assert (await c.action("DBPut", Family="wpl", Key="hb", Val="42"))[
        "Message"
    ] == "Updated database successfully"
    reply = await c.action("DBGet", Family="wpl", Key="hb")
    assert (reply["EventList"], reply["Message"]) == ("start", "Result will follow")
    row = await c.event("DBGetResponse")
    assert (row["Family"], row["Key"], row["Val"]) == ("wpl", "hb", "42")
    assert (await c.event("DBGetComplete"))["ListItems"] == "1"
    assert (await c.action("DBDel", Family="wpl", Key="hb"))[
        "Message"
    ] == "Key deleted successfully"
    missing = await c.action("DBGet", Family="wpl", Key="hb")
    assert (missing.name, missing["Message"]) == ("Error", "Database entry not found")
    gone = await c.action("Getvar", Channel="PJSIP/nosuch-00000000", Variable="X")
    assert (gone.name, gone["Message"]) == ("Error", "No such channel")
    assert (await c.action("Hangup"))["Message"] == "No channel specified"
    assert (await c.action("Originate"))["Message"] == "Channel not specified"
    assert (await c.action("AGI", Channel="PJSIP/x"))[
        "Message"
    ] == "Both, Channel and Command are *required*"
    ping = await c.action("Ping")
    assert ping["Ping"] == "Pong"


async def test_queue_member_actions(sim: SimPBX) -> None:
    c = await client(sim)
    await c.login()
    added = await c.action(
        "QueueAdd", Queue="counselors", Interface="PJSIP/agent3", MemberName="Agent Three"
    )
    assert added["Message"] == "Added interface to queue"
    assert (await c.event("QueueMemberAdded"))["Membership"] == "dynamic"
    assert (await c.action("QueueAdd", Queue="counselors", Interface="PJSIP/agent3"))[
        "Message"
    ] == ("Unable to add interface: Already there")
    assert (await c.action("QueueRemove", Queue="counselors", Interface="PJSIP/agent1"))[
        "Message"
    ] == ("Member not dynamic")
    paused = await c.action("QueuePause", Interface="PJSIP/agent3", Paused="true", Reason="lunch")
    assert paused["Message"] == "Interface paused successfully"
    await c.action("QueueStatus", Queue="counselors")
    member = await c.event("QueueMember", Location="PJSIP/agent3")
    assert (member["Paused"], member["PausedReason"]) == ("1", "lunch")
    bad = await c.action("QueuePenalty", Interface="PJSIP/nosuch", Penalty="1")
    assert bad["Message"] == "Invalid interface, queuename or penalty"


async def test_scaled_real_time_clock_runs_a_call() -> None:
    # the CLI and demos run on a scaled wall clock rather than a VirtualClock
    pbx = SimPBX(lab_config(), speed=50)
    await pbx.start(port=0)
    try:
        c = await client(pbx)
        await c.login()
        chan = pbx.place_call("caller", "600")
        hangup = await c.event("Hangup", Channel=chan.name)
        assert (hangup["Cause"], hangup["Cause-txt"]) == ("16", "Normal Clearing")
        names = [f.name for f in c.frames if f.kind == "event" and f.get("Channel") == chan.name]
        assert names.index("Newstate") < names.index("SoftHangupRequest") < names.index("Hangup")
    finally:
        await pbx.stop()


async def test_originate_that_nobody_answers(sim: SimPBX) -> None:
    c = await client(sim)
    await c.login()
    reply = await c.action(
        "Originate", Channel="PJSIP/agent4", Context="lab-agents", Exten="700", Timeout="2000"
    )
    assert (reply.name, reply["Message"]) == ("Error", "Originate failed")
    queued = await c.action(
        "Originate",
        Channel="PJSIP/agent4",
        Context="lab-agents",
        Exten="700",
        Timeout="2000",
        Async="true",
    )
    assert queued["Message"] == "Originate successfully queued"
    response = await c.event("OriginateResponse", ActionID=queued.action_id or "")
    assert (response["Response"], response["Reason"]) == ("Failure", "3")
    assert [f["DialStatus"] for f in c.events("DialEnd")] == ["NOANSWER", "NOANSWER"]
