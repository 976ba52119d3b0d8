"""AsyncAGI in the simulator: result lines, timeouts, and what ends it (and what does not)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import unquote

import pytest

from callcenter.sim import SimPBX, lab_config
from callcenter.sim.clock import VirtualClock
from tests.support.conformance import SimClient

DIALPLAN = r"""
[lab-inbound]
exten => 1090,1,Answer()
 same => n,Set(TIMEOUT(absolute)=${WATCHDOG})
 same => n,AGI(agi:async)
 same => n,Set(TIMEOUT(absolute)=0)
 same => n,Set(AFTER=${CALLERID(name)}|${CALLERID(num)})
 same => n,Wait(1)
 same => n,Hangup()
exten => T,1,Set(WENT_TO=T)
 same => n,Wait(1)
 same => n,Hangup()
exten => h,1,NoOp(ended ${WENT_TO})
"""


@pytest.fixture
async def sim() -> AsyncIterator[SimPBX]:
    pbx = SimPBX(lab_config(dialplan=DIALPLAN), clock=VirtualClock())
    pbx.core.dialplan.globals["WATCHDOG"] = "0"
    await pbx.start(port=0)
    yield pbx
    await pbx.stop()
    pbx.clock.stop()  # type: ignore[attr-defined]


async def start_call(sim: SimPBX) -> tuple[SimClient, str]:
    c = await SimClient(sim).connect()
    await c.login()
    chan = sim.place_call("caller", "1090")
    await c.event("AsyncAGIStart", Channel=chan.name)
    return c, chan.name


async def agi(c: SimClient, channel: str, command: str, command_id: str) -> str:
    reply = await c.action("AGI", Channel=channel, Command=command, CommandID=command_id)
    assert reply["Message"] == "Added AGI command to queue"
    done = await c.event("AsyncAGIExec", CommandId=command_id)
    return unquote(done["Result"])


async def test_env_is_url_encoded_like_asterisk(sim: SimPBX) -> None:
    c, channel = await start_call(sim)
    start = c.events("AsyncAGIStart")[0]
    assert start["Env"].startswith("agi_request%3A%20async%0Aagi_channel%3A%20PJSIP%2Fcaller-")
    env = unquote(start["Env"])
    assert env.endswith("\n\n") and "agi_extension: 1090\n" in env


async def test_stream_file_escape_digit_and_unknown_commands(sim: SimPBX) -> None:
    c, channel = await start_call(sim)
    chan = sim.core.find_channel(channel)
    assert chan is not None
    sim.clock.call_later(0.5, lambda: sim.core.spawn(sim.core.send_dtmf(chan, "1")))
    result = await agi(c, channel, 'STREAM FILE hello-world "19"', "s1")
    code, rest = result.split(" ", 1)
    assert code == "200" and rest.startswith("result=49 endpos=")
    assert int(rest.split("endpos=")[1]) < 11234  # interrupted before the end
    assert await agi(c, channel, 'STREAM FILE beep ""', "s2") == "200 result=0 endpos=3404\n"
    assert await agi(c, channel, "FROB NICATE", "x") == "510 Invalid or unknown command\n"
    usage = await agi(c, channel, "GET DATA", "u")
    assert usage.startswith("520-Invalid command syntax.  Proper usage follows:\n")
    assert usage.endswith("520 End of proper usage.\n")
    assert await agi(c, channel, "SET VARIABLE WPL_X hello", "v") == "200 result=1\n"
    assert await agi(c, channel, "GET VARIABLE WPL_X", "g") == "200 result=1 (hello)\n"


async def test_get_data_digits_partial_and_timeout(sim: SimPBX) -> None:
    c, channel = await start_call(sim)
    chan = sim.core.find_channel(channel)
    assert chan is not None
    assert await agi(c, channel, "GET DATA beep 3000 1", "t") == "200 result= (timeout)\n"
    sim.clock.call_later(1.0, lambda: sim.core.spawn(sim.core.send_dtmf(chan, "12")))
    assert await agi(c, channel, "GET DATA beep 8000 2", "d") == "200 result=12\n"
    # one digit of two, then silence: the timeout is also the inter-digit wait
    sim.clock.call_later(1.0, lambda: sim.core.spawn(sim.core.send_dtmf(chan, "1")))
    assert await agi(c, channel, "GET DATA beep 2000 2", "p") == "200 result=1 (timeout)\n"


async def test_set_callerid_quoted_sets_the_name_only(sim: SimPBX) -> None:
    c, channel = await start_call(sim)
    assert await agi(c, channel, 'SET CALLERID "T-4821" <4821>', "cid") == "200 result=1\n"
    assert await agi(c, channel, "ASYNCAGI BREAK", "b") == "200 result=0\n"
    await c.event("AsyncAGIEnd", Channel=channel)
    after = await c.event("VarSet", Channel=channel, Variable="AFTER")
    assert after["Value"] == "T-4821|"
    assert after["CallerIDNum"] == "<unknown>" and after["CallerIDName"] == "T-4821"


async def test_async_agi_never_times_out_by_itself(sim: SimPBX) -> None:
    c, channel = await start_call(sim)
    await sim.clock.sleep(3600)
    assert sim.core.find_channel(channel) is not None
    assert not c.events("AsyncAGIEnd")
    sim.core.remote_hangup(sim.core.find_channel(channel))  # type: ignore[arg-type]
    await c.event("AsyncAGIEnd", Channel=channel)
    await c.event("Hangup", Channel=channel)


async def test_timeout_absolute_ends_agi_and_runs_t_then_h(sim: SimPBX) -> None:
    sim.core.dialplan.globals["WATCHDOG"] = "30"
    c, channel = await start_call(sim)
    await c.event("AsyncAGIEnd", Channel=channel)
    went = await c.event("VarSet", Channel=channel, Variable="WENT_TO")
    assert went["Exten"] == "T"
    h = await c.event("Newexten", Channel=channel, Extension="h")
    assert h["AppData"] == "ended T"


async def test_agi_for_a_channel_out_of_asyncagi_is_queued_never_run(sim: SimPBX) -> None:
    c, channel = await start_call(sim)
    assert await agi(c, channel, "ASYNCAGI BREAK", "b") == "200 result=0\n"
    mark = len(c.frames)
    reply = await c.action("AGI", Channel=channel, Command="ANSWER", CommandID="late")
    assert reply["Message"] == "Added AGI command to queue"
    await c.event("Hangup", Channel=channel, start=mark)
    assert not [f for f in c.frames[mark:] if f.name in ("AGIExecStart", "AsyncAGIExec")]
