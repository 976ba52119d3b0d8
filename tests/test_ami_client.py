"""The AMI client against a fake Asterisk over real loopback TCP, replaying recorded replies."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from callcenter.ami import (
    AGIChannelGone,
    AMIActionError,
    AMIAuthError,
    AMIConnectionError,
    AMIEncodeError,
    AMIParser,
    AMITimeoutError,
    Frame,
)
from callcenter.ami.client import AMIClient, Backoff
from tests.support.fake_ami import FakeAMIServer, FakeAMISession, load_exchanges, raw_frames

TRACES = Path(__file__).parent / "fixtures" / "asterisk"
CALLER_CHANNEL = "PJSIP/caller-00000005"
CALLER_NUMBER = "5550100"  # the lab caller's number in every trace


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAMIServer]:
    async with FakeAMIServer() as server:
        yield server


def client_for(pbx: FakeAMIServer, **options: object) -> AMIClient:
    settings: dict[str, object] = {
        "action_timeout": 2.0,
        "connect_timeout": 2.0,
        "login_timeout": 2.0,
        "ping_interval": None,
        "backoff": Backoff(initial=0.01, maximum=0.05),
        "logoff_timeout": 0.2,
    }
    settings.update(options)
    secret = str(settings.pop("secret", pbx.secret))
    auth = settings.pop("auth", "md5")
    return AMIClient("127.0.0.1", pbx.port, pbx.username, secret, auth, **settings)  # type: ignore[arg-type]


async def until(predicate: Callable[[], object], within: float = 2.0) -> None:
    async with asyncio.timeout(within):
        # Polling: the conditions are on many kinds of state, none with an event.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


def without_action_id(frame: Frame) -> list[tuple[str, str]]:
    return [(k, v) for k, v in frame.pairs() if k != "ActionID"]


# -- login ------------------------------------------------------------------------


async def test_md5_login_sends_md5_of_challenge_and_secret(pbx: FakeAMIServer) -> None:
    pbx.challenge = "152146047"  # the challenge in actions_misc.ami
    async with client_for(pbx) as client:
        assert client.connected
    challenge, login = pbx.actions()[:2]
    assert without_action_id(challenge) == [("Action", "Challenge"), ("AuthType", "MD5")]
    key = hashlib.md5(b"152146047" + pbx.secret.encode()).hexdigest()
    # Byte for byte the Login the lab client sent to the real Asterisk.
    recorded = load_exchanges(["actions_misc"])["login"][0].action
    assert login.get("Key") == key == recorded.get("Key")
    assert without_action_id(login) == without_action_id(recorded)


async def test_md5_login_with_a_fresh_challenge(pbx: FakeAMIServer) -> None:
    async with client_for(pbx) as client:
        await client.send_action("CoreStatus")
    session = pbx.sessions[0]
    assert session.challenge is not None
    login = pbx.actions("Login")[0]
    expected = hashlib.md5((session.challenge + "labsecret").encode()).hexdigest()
    assert login.get("Key") == expected
    assert login.get("Secret") is None


async def test_plain_login(pbx: FakeAMIServer) -> None:
    async with client_for(pbx, auth="plain") as client:
        await client.send_action("CoreStatus")
    assert pbx.actions("Challenge") == []
    login = pbx.actions("Login")[0]
    assert without_action_id(login) == [
        ("Action", "Login"),
        ("Username", "lab"),
        ("Secret", "labsecret"),
        ("Events", "on"),
    ]


@pytest.mark.parametrize("auth", ["md5", "plain"])
async def test_wrong_secret_is_an_auth_error_and_is_not_retried(
    pbx: FakeAMIServer, auth: str
) -> None:
    client = client_for(pbx, secret="wrongsecret", auth=auth)
    with pytest.raises(AMIAuthError, match="Authentication failed"):
        await client.connect()
    # Many backoff periods later the PBX has still seen exactly one connection.
    await asyncio.sleep(0.2)
    assert pbx.connections == 1
    assert pbx.failed_logins == 1
    assert not client.connected
    with pytest.raises(AMIConnectionError):
        await client.send_action("CoreStatus")
    await client.close()


async def test_nothing_listening_is_a_connection_error(pbx: FakeAMIServer) -> None:
    port = pbx.port
    await pbx.close()
    client = AMIClient("127.0.0.1", port, "lab", "labsecret", connect_timeout=1.0)
    with pytest.raises(AMIConnectionError):
        await client.connect()


# -- actions ----------------------------------------------------------------------


async def test_response_matched_by_action_id(pbx: FakeAMIServer) -> None:
    async with client_for(pbx) as client:
        first, second = await asyncio.gather(
            client.send_action("DBPut", Family="wpl", Key="heartbeat", Val="1795329070"),
            client.send_action("Getvar", Channel="PJSIP/caller-0000001c", Variable="WPL_TEST"),
        )
    assert first["Message"] == "Updated database successfully"
    assert second["Value"] == "hello world"
    sent = {f.name: f.action_id for f in pbx.actions()}
    assert first.action_id == sent["DBPut"]
    assert second.action_id == sent["Getvar"]


async def test_error_response_raises_action_error(pbx: FakeAMIServer) -> None:
    async with client_for(pbx) as client:
        with pytest.raises(AMIActionError) as raised:
            await client.send_action("QueueRemove", Queue="counselors", Interface="PJSIP/agent1")
        assert raised.value.message == "Member not dynamic"
        assert raised.value.action == "QueueRemove"
        # The session is fine afterwards.
        ok = await client.send_action("QueueRemove", Queue="counselors", Interface="PJSIP/agent3")
        assert ok.name == "Success"


async def test_repeated_headers_and_header_injection(pbx: FakeAMIServer) -> None:
    async with client_for(pbx) as client:
        await client.send_action(
            "Setvar",
            [("Channel", "PJSIP/caller-0000001c"), ("Variable", "WPL_TEST")],
            Value="hello world",
        )
        await client.send_action("Originate", {"Channel": "PJSIP/agent1"}, Variable=["A=1", "B=2"])
        with pytest.raises(AMIEncodeError):
            await client.send_action("Setvar", Variable="X", Value="a\r\nAction: Hangup")
    originate = pbx.actions("Originate")[0]
    assert originate.get_all("Variable") == ["A=1", "B=2"]
    assert pbx.actions("Hangup") == []
    assert [k for k, _ in without_action_id(pbx.actions("Setvar")[0])] == [
        "Action",
        "Channel",
        "Variable",
        "Value",
    ]


async def test_action_timeout_leaves_the_connection_up(pbx: FakeAMIServer) -> None:
    pbx.on_action("CoreStatus", lambda session, action: None)  # never answered
    async with client_for(pbx) as client:
        with pytest.raises(AMITimeoutError) as raised:
            await client.send_action("CoreStatus", timeout=0.05)
        assert isinstance(raised.value, TimeoutError)
        pbx.reset_action("CoreStatus")
        assert (await client.send_action("CoreStatus")).name == "Success"
    assert pbx.connections == 1


# -- list actions -------------------------------------------------------------------


async def test_queue_status_list(pbx: FakeAMIServer) -> None:
    seen: list[Frame] = []
    async with client_for(pbx) as client:
        client.on_event("*", seen.append)
        events = await client.send_list_action("QueueStatus", Queue="counselors")
        pbx.send_event("Marker")
        await until(lambda: seen[-1:] and seen[-1].name == "Marker")
    assert [e.name for e in events] == [
        "QueueParams",
        "QueueMember",
        "QueueMember",
        "QueueStatusComplete",
    ]
    action_id = pbx.actions("QueueStatus")[0].action_id
    assert {e.action_id for e in events} == {action_id}
    assert events[-1]["EventList"] == "Complete"
    assert events[-1]["ListItems"] == "3"
    assert events[0]["Queue"] == "counselors"
    # The list's events went to the action, not to the event handlers.
    assert not [e for e in seen if e.action_id == action_id]


async def test_core_show_channels_list(pbx: FakeAMIServer) -> None:
    during_call = next(
        e for e in load_exchanges(["actions"])["coreshowchannels"] if len(e.replies) > 2
    )
    pbx.prefer(during_call)
    async with client_for(pbx) as client:
        events = await client.send_list_action("CoreShowChannels")
    assert [e.name for e in events] == ["CoreShowChannel", "CoreShowChannelsComplete"]
    assert events[0]["Channel"] == during_call.reply_frames[1]["Channel"]


async def test_dbget_is_a_list_and_a_missing_key_an_error(pbx: FakeAMIServer) -> None:
    async with client_for(pbx) as client:
        found = await client.send_list_action("DBGet", Family="wpl", Key="heartbeat")
        with pytest.raises(AMIActionError, match="Database entry not found"):
            await client.send_list_action("DBGet", Family="wpl", Key="nosuchkey")
        # Not a list action: no "EventList: start", so no list, and no timeout.
        assert await client.send_list_action("CoreStatus", timeout=30) == []
    assert [e.name for e in found] == ["DBGetResponse", "DBGetComplete"]
    assert (found[0]["Family"], found[0]["Key"], found[0]["Val"]) == (
        "wpl",
        "heartbeat",
        "1795329070",
    )


async def test_list_split_across_reads(pbx: FakeAMIServer) -> None:
    exchange = load_exchanges(["queue_priority_two_callers"])["queuestatus"][0]

    async def dribble(session: FakeAMISession, action: Frame) -> None:
        data = b"".join(
            raw.replace(b"ActionID: lab-8", f"ActionID: {action.action_id}".encode()) + b"\r\n\r\n"
            for raw in exchange.replies
        )
        for start in range(0, len(data), 7):
            session.write(data[start : start + 7])
            await asyncio.sleep(0)

    pbx.on_action("QueueStatus", dribble)
    async with client_for(pbx) as client:
        events = await client.send_list_action("QueueStatus", Queue="counselors")
    assert [e.name for e in events] == [f.name for f in exchange.reply_frames[1:]]
    entries = [e for e in events if e.name == "QueueEntry"]
    assert [e["Priority"] for e in entries] == ["10", "0"]


async def test_originate_response_reaches_handlers_and_the_helper(pbx: FakeAMIServer) -> None:
    seen: list[Frame] = []
    async with client_for(pbx) as client:
        client.on_event("OriginateResponse", seen.append)
        response = await client.originate(
            Channel="PJSIP/agent1",
            Context="lab-agents",
            Exten="700",
            Priority=1,
            CallerID="AMI Lab <5550199>",
            Timeout=15000,
            Variable=["LABVAR=hello"],
            timeout=2.0,
        )
        await until(lambda: seen)
    action = pbx.actions("Originate")[0]
    assert action["Async"] == "true"
    assert response.kind == "event"
    assert response["Response"] == "Success"
    assert response.action_id == action.action_id
    assert seen == [response]


# -- AsyncAGI -------------------------------------------------------------------------


async def test_async_agi_exchange_as_recorded(pbx: FakeAMIServer) -> None:
    """queue_asyncagi_call: STREAM FILE, then ASYNCAGI BREAK hands the call to Queue()."""
    starts: list[Frame] = []
    ends: list[Frame] = []
    async with client_for(pbx) as client:
        client.on_event("AsyncAGIStart", starts.append)
        client.on_event("AsyncAGIEnd", ends.append)
        pbx.start_agi(CALLER_CHANNEL)
        await until(lambda: starts)
        assert client.agi_channel_active(CALLER_CHANNEL)
        played = await client.agi(CALLER_CHANNEL, 'STREAM FILE hello-world ""')
        broke = await client.agi(CALLER_CHANNEL, "ASYNCAGI BREAK")
        await until(lambda: ends)
        assert not client.agi_channel_active(CALLER_CHANNEL)
    assert (played.code, played.result, played.endpos) == (200, "0", 11234)
    assert (broke.code, broke.result) == (200, "0")
    stream, brk = pbx.actions("AGI")
    assert [k for k, _ in without_action_id(stream)] == [
        "Action",
        "Channel",
        "Command",
        "CommandID",
    ]
    assert stream["Command"] == 'STREAM FILE hello-world ""'
    assert stream["CommandID"] != brk["CommandID"]


async def test_get_data_digits_and_timeouts(pbx: FakeAMIServer) -> None:
    async with client_for(pbx) as client:
        pbx.start_agi(CALLER_CHANNEL)
        digit = await client.agi(CALLER_CHANNEL, "GET DATA beep 6000 1")
        silent = await client.agi(CALLER_CHANNEL, "GET DATA beep 3000 1")
        two = await client.agi(CALLER_CHANNEL, "GET DATA beep 8000 2")
        pbx.agi_results["GET DATA beep 9000 4"] = "200 result=12 (timeout)"
        partial = await client.agi(CALLER_CHANNEL, "GET DATA beep 9000 4")
        unknown = await client.agi(CALLER_CHANNEL, "FROB NICATE")
    assert (digit.result, digit.timed_out) == ("2", False)
    assert (silent.result, silent.timed_out) == ("", True)
    assert (two.result, two.timed_out) == ("12", False)
    assert (partial.result, partial.timed_out) == ("12", True)
    assert (unknown.code, unknown.message) == (510, "Invalid or unknown command")


@pytest.mark.parametrize("how", ["AsyncAGIEnd", "Hangup"])
async def test_agi_on_a_channel_that_left_fails_fast(pbx: FakeAMIServer, how: str) -> None:
    async with client_for(pbx) as client:
        pbx.start_agi(CALLER_CHANNEL)
        pbx.agi_hold.add(CALLER_CHANNEL)  # acked, result withheld
        pending = asyncio.create_task(client.agi(CALLER_CHANNEL, "GET DATA beep 6000 1"))
        await pbx.wait_for_action("AGI")
        await asyncio.sleep(0.01)
        assert not pending.done()
        if how == "Hangup":
            pbx.hangup(CALLER_CHANNEL)
        else:
            pbx.end_agi(CALLER_CHANNEL)
        with pytest.raises(AGIChannelGone) as raised:
            await pending
        assert raised.value.channel == CALLER_CHANNEL
        # A new command fails at once, without asking the PBX.
        with pytest.raises(AGIChannelGone):
            await client.agi(CALLER_CHANNEL, "ASYNCAGI BREAK")
        assert len(pbx.actions("AGI")) == 1
        # Other channels are not affected.
        pbx.start_agi("PJSIP/caller-00000006")
        ok = await client.agi("PJSIP/caller-00000006", "SET VARIABLE WPL_CATEGORY internet")
        assert ok.result == "1"


async def test_agi_for_a_channel_asterisk_does_not_know(pbx: FakeAMIServer) -> None:
    async with client_for(pbx) as client:
        with pytest.raises(AGIChannelGone) as raised:
            await client.agi("PJSIP/nosuch-00000000", "ANSWER")
    assert isinstance(raised.value.__cause__, AMIActionError)


async def test_agi_reentered_after_break_works_again(pbx: FakeAMIServer) -> None:
    async with client_for(pbx) as client:
        pbx.start_agi(CALLER_CHANNEL)
        await client.agi(CALLER_CHANNEL, "ASYNCAGI BREAK")
        await pbx.wait_for(lambda: pbx.agi_state[CALLER_CHANNEL] == "ended")
        await until(lambda: not client.agi_channel_active(CALLER_CHANNEL))
        pbx.start_agi(CALLER_CHANNEL)  # the dialplan ran AGI(agi:async) again
        await until(lambda: client.agi_channel_active(CALLER_CHANNEL))
        result = await client.agi(CALLER_CHANNEL, "GET DATA beep 6000 1")
    assert result.result == "2"


async def test_agi_timeout(pbx: FakeAMIServer) -> None:
    async with client_for(pbx) as client:
        pbx.start_agi(CALLER_CHANNEL)
        pbx.agi_hold.add(CALLER_CHANNEL)
        with pytest.raises(AMITimeoutError):
            await client.agi(CALLER_CHANNEL, "GET DATA beep 6000 1", timeout=0.05)


# -- connection loss and reconnect ------------------------------------------------------


async def test_dropped_connection_mid_action_fails_it_and_reconnects(pbx: FakeAMIServer) -> None:
    connected: list[int] = []
    disconnected: list[int] = []
    pbx.on_action("QueueStatus", lambda session, action: session.drop())
    client = client_for(pbx)

    async def resync() -> None:
        # The resync point: actions work from inside the hook.
        await client.send_action("CoreStatus")
        connected.append(pbx.connections)

    async def lost() -> None:
        disconnected.append(pbx.connections)

    client.on_connected(resync)
    client.on_disconnected(lost)
    async with client:
        pbx.start_agi(CALLER_CHANNEL)
        pbx.agi_hold.add(CALLER_CHANNEL)
        agi = asyncio.create_task(client.agi(CALLER_CHANNEL, "GET DATA beep 6000 1"))
        await pbx.wait_for_action("AGI")
        with pytest.raises(AMIConnectionError):
            await client.send_list_action("QueueStatus", Queue="counselors")
        with pytest.raises(AMIConnectionError):
            await agi
        await until(lambda: len(connected) == 2)
        assert disconnected == [1]
        assert connected == [1, 2]
        assert client.connected
        assert pbx.logins == 2
        assert len(pbx.actions("Login")) == 2
        pbx.reset_action("QueueStatus")
        events = await client.send_list_action("QueueStatus", Queue="counselors")
        assert events[-1].name == "QueueStatusComplete"
        assert client.stats.disconnects == 1


async def test_reconnect_keeps_trying_while_the_pbx_is_away(pbx: FakeAMIServer) -> None:
    async with client_for(pbx) as client:
        port = pbx.port
        await pbx.close()
        await until(lambda: client.stats.connect_failures >= 2)
        with pytest.raises(AMIConnectionError):
            await client.send_action("CoreStatus")
        # The PBX comes back on the same port.
        async with FakeAMIServer(port=port) as back:
            await back.wait_for_logins(1)
            await until(lambda: client.connected)
            assert (await client.send_action("CoreStatus")).name == "Success"


async def test_missed_pong_counts_as_connection_loss(pbx: FakeAMIServer) -> None:
    async with client_for(pbx, ping_interval=0.02, ping_timeout=0.05) as client:
        await pbx.wait_for_action("Ping")
        pbx.answer_pings = False
        await pbx.wait_for_logins(2)
        pbx.answer_pings = True
        assert client.stats.missed_pongs >= 1
        await until(lambda: client.connected)
        assert (await client.send_action("CoreStatus")).name == "Success"


async def test_reconnect_off_stays_down(pbx: FakeAMIServer) -> None:
    async with client_for(pbx, reconnect=False) as client:
        pbx.drop()
        await until(lambda: not client.connected)
        await asyncio.sleep(0.1)
        assert pbx.connections == 1
        with pytest.raises(AMIConnectionError):
            await client.send_action("CoreStatus")


# -- malformed input --------------------------------------------------------------------


async def test_malformed_frames_are_skipped_counted_and_reading_goes_on(
    pbx: FakeAMIServer,
) -> None:
    seen: list[Frame] = []
    async with client_for(pbx) as client:
        client.on_event("*", seen.append)
        pbx.push(
            b"this is not a header\r\n\r\n"
            b"Event: Broken\r\nPrivilege: call,all\r\nno colon here\r\n\r\n"
            b"\x00\x00\x00\r\n\r\n"
            b"Event: StillHere\r\nValue: 1\r\n\r\n"
        )
        await until(lambda: any(e.name == "StillHere" for e in seen))
        assert client.stats.bad_frames == 3
        assert (await client.send_action("CoreStatus")).name == "Success"
    assert [e.name for e in seen if e.name in ("Broken", "StillHere")] == ["StillHere"]
    assert pbx.connections == 1


async def test_oversized_frame_drops_the_connection_and_reconnects(pbx: FakeAMIServer) -> None:
    reconnected = asyncio.Event()
    client = client_for(pbx, max_frame_size=4096)

    async def on_connected() -> None:
        if pbx.connections == 2:
            reconnected.set()

    client.on_connected(on_connected)
    async with client:
        pbx.push(b"Event: Flood\r\nData: " + b"x" * 20_000)
        async with asyncio.timeout(2):
            await reconnected.wait()
        assert client.stats.protocol_errors == 1
        assert pbx.logins == 2
        assert (await client.send_action("CoreStatus")).name == "Success"


# -- event handlers ------------------------------------------------------------------------


async def test_glob_and_exact_subscriptions(pbx: FakeAMIServer) -> None:
    queue_events: list[str] = []
    everything: list[str] = []
    exact: list[str] = []
    async with client_for(pbx) as client:
        client.on_event("Queue*", lambda f: queue_events.append(f.name))
        client.on_event("*", lambda f: everything.append(f.name))
        sub = client.on_event("queuecallerjoin", lambda f: exact.append(f.name))
        for name in ("QueueCallerJoin", "Hangup", "QueueCallerLeave"):
            pbx.send_event(name, {"Queue": "counselors"})
        await until(lambda: everything[-1:] == ["QueueCallerLeave"])
        sub.unsubscribe()
        pbx.send_event("QueueCallerJoin", {"Queue": "counselors"})
        pbx.send_event("Marker", {})
        await until(lambda: everything[-1:] == ["Marker"])
    assert queue_events == ["QueueCallerJoin", "QueueCallerLeave", "QueueCallerJoin"]
    assert exact == ["QueueCallerJoin"]
    assert everything[-5:] == [
        "QueueCallerJoin",
        "Hangup",
        "QueueCallerLeave",
        "QueueCallerJoin",
        "Marker",
    ]


async def test_a_stuck_handler_stops_neither_events_nor_replies(pbx: FakeAMIServer) -> None:
    release = asyncio.Event()
    stuck_saw: list[str] = []
    others: list[str] = []

    async def stuck(frame: Frame) -> None:
        stuck_saw.append(frame["Seq"])
        await release.wait()

    async with client_for(pbx) as client:
        slow = client.on_event("Tick", stuck, queue_size=2)
        client.on_event("Tick", lambda f: others.append(f["Seq"]))
        pbx.push(b"".join(b"Event: Tick\r\nSeq: %d\r\n\r\n" % i for i in range(20)))
        await until(lambda: len(others) == 20)
        # Replies still come while the handler is stuck.
        assert (await client.send_action("CoreStatus")).name == "Success"
        assert others == [str(i) for i in range(20)]
        assert slow.dropped > 0
        assert client.stats.events_dropped == slow.dropped
        release.set()
        await until(lambda: len(stuck_saw) + slow.dropped == 20)
    # What the stuck handler did get came first, in order.
    assert stuck_saw == [str(i) for i in range(len(stuck_saw))]


async def test_a_raising_handler_does_not_affect_the_others(
    pbx: FakeAMIServer, caplog: pytest.LogCaptureFixture
) -> None:
    raised: list[str] = []
    calm: list[str] = []

    async def broken(frame: Frame) -> None:
        raised.append(frame["Seq"])
        raise RuntimeError("handler bug")

    async with client_for(pbx) as client:
        client.on_event("Tick", broken)
        client.on_event("Tick", lambda f: calm.append(f["Seq"]))
        for i in range(3):
            pbx.send_event("Tick", {"Seq": str(i)})
        await until(lambda: len(calm) == 3 and len(raised) == 3)
        assert client.stats.handler_errors == 3
        assert (await client.send_action("CoreStatus")).name == "Success"
    assert raised == calm == ["0", "1", "2"]
    assert "handler bug" in caplog.text


async def test_recorded_call_flow_is_delivered_and_nothing_logs_the_number(
    pbx: FakeAMIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data = (TRACES / "queue_asyncagi_call.ami").read_bytes()
    frames = raw_frames(data)
    recorded = [f.name for f in AMIParser().feed(data) if f.kind == "event"]
    names: list[str] = []
    client = client_for(pbx)
    client.on_event("*", lambda f: names.append(f.name))
    async with client:
        # The whole recorded stream (responses to the lab client's ActionIDs
        # included: unmatched, counted, not fatal) then AsyncAGI on top.
        pbx.push(b"".join(raw + b"\r\n\r\n" for raw in frames) + b"Event: Marker\r\n\r\n")
        await until(lambda: names[-1:] == ["Marker"])
        assert names == ["FullyBooted", *recorded, "Marker"]
        pbx.start_agi(CALLER_CHANNEL)  # the recorded call hung up; a new AGI run
        await until(lambda: client.agi_channel_active(CALLER_CHANNEL))
        pbx.agi_results["GET DATA beep 6000 10"] = f"200 result={CALLER_NUMBER}"
        digits = await client.agi(CALLER_CHANNEL, "GET DATA beep 6000 10")
        assert digits.result == CALLER_NUMBER
        pbx.hangup(CALLER_CHANNEL)
        await until(lambda: not client.agi_channel_active(CALLER_CHANNEL))
        with pytest.raises(AGIChannelGone):
            await client.agi(CALLER_CHANNEL, "ANSWER")
        assert client.stats.unmatched_responses == 5
        pbx.push(b"Event: X\r\nCallerIDNum 5550100\r\n\r\n")  # malformed, with the number
        await until(lambda: client.stats.bad_frames == 1)
    assert caplog.records  # something was logged
    assert CALLER_NUMBER not in caplog.text


def test_the_ami_package_imports_nothing_else_from_callcenter() -> None:
    code = (
        "import sys, callcenter.ami; "
        "print(sorted(m for m in sys.modules if m.startswith('callcenter.') "
        "and not m.startswith('callcenter.ami')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
