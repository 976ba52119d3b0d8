"""AsyncAGI as res_agi runs it: commands queued by ``Action: AGI``, results in AsyncAGIExec.

AsyncAGI never times out by itself: only a hangup, ``TIMEOUT(absolute)`` or
``ASYNCAGI BREAK`` ends it. Result lines are Asterisk's, URL-encoded into
the event (``200%20result%3D0%0A``).
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from .channels import UP, Channel, ChannelHungUp, ChannelInterrupted
from .core import AppResult, parse_callerid, uri_encode
from .dialplan import split_app

if TYPE_CHECKING:
    from .core import PBXCore

#: res_agi's async loop wakes up on the next media frame (20 ms) or after 100 ms.
FIRST_PICKUP = 0.1
NEXT_PICKUP = 0.02

_USAGE = {
    "stream file": " Usage: STREAM FILE <filename> <escape digits> [sample offset]",
    "get data": " Usage: GET DATA <file to be streamed> [timeout] [max digits]",
    "say digits": " Usage: SAY DIGITS <number> <escape digits>",
    "set variable": " Usage: SET VARIABLE <variablename> <value>",
    "get variable": " Usage: GET VARIABLE <variablename>",
    "set callerid": " Usage: SET CALLERID <number>",
    "exec": " Usage: EXEC <application> <options>",
}


class _UsageError(Exception):
    pass


def _env(core: PBXCore, chan: Channel) -> str:
    lines = [
        ("agi_request", "async"),
        ("agi_channel", chan.name),
        ("agi_language", chan.language),
        ("agi_type", chan.tech),
        ("agi_uniqueid", chan.uniqueid),
        ("agi_version", core.config.version),
        ("agi_callerid", chan.caller_num or "unknown"),
        ("agi_calleridname", chan.caller_name or "unknown"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", chan.dnid or "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", chan.context),
        ("agi_extension", chan.exten),
        ("agi_priority", str(chan.priority)),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", chan.accountcode),
        ("agi_threadid", str(139969434072768 + int(chan.uniqueid.rpartition(".")[2] or 0))),
    ]
    return "".join(f"{k}: {v}\n" for k, v in lines) + "\n"


async def run_async_agi(core: PBXCore, chan: Channel) -> str:
    core.chan_event("AsyncAGIStart", chan, [("Env", uri_encode(_env(core, chan)))], "agi,all")
    chan.in_async_agi = True
    pickup = FIRST_PICKUP
    try:
        while True:
            while not chan.agi_queue:
                chan.check()
                chan.agi_wakeup.clear()
                # woken by Action: AGI, a hangup, TIMEOUT(absolute) or a Redirect
                await chan.agi_wakeup.wait()
                chan.check()
            await chan.wait(pickup)
            command, command_id = chan.agi_queue.popleft()
            internal_id = str(core.random.randrange(10_000_000, 2_147_483_647))
            core.chan_event(
                "AGIExecStart", chan, [("CommandId", internal_id), ("Command", command)], "agi,all"
            )
            try:
                result, stop = await _execute(core, chan, command)
            except ChannelHungUp:
                result, stop = "200 result=-1\n", True
                _exec_end(core, chan, internal_id, command, result, command_id)
                raise
            _exec_end(core, chan, internal_id, command, result, command_id)
            pickup = NEXT_PICKUP
            if stop:
                chan.in_async_agi = False
                core.chan_event("AsyncAGIEnd", chan, [], "agi,all")
                core.set_var(chan, "AGISTATUS", "SUCCESS")
                return AppResult.NEXT
    except ChannelInterrupted as exc:
        if chan.in_async_agi:
            chan.in_async_agi = False
            core.chan_event("AsyncAGIEnd", chan, [], "agi,all")
            core.set_var(
                chan, "AGISTATUS", "HANGUP" if isinstance(exc, ChannelHungUp) else "SUCCESS"
            )
        raise


def _exec_end(
    core: PBXCore,
    chan: Channel,
    internal_id: str,
    command: str,
    result: str,
    command_id: str | None,
) -> None:
    code = result[:3]
    core.chan_event(
        "AGIExecEnd",
        chan,
        [
            ("CommandId", internal_id),
            ("Command", command),
            ("ResultCode", code),
            ("Result", "Success" if code == "200" else "Failure"),
        ],
        "agi,all",
    )
    extra = [("Result", uri_encode(result))]
    if command_id is not None:
        extra.append(("CommandId", command_id))
    core.chan_event("AsyncAGIExec", chan, extra, "agi,all")


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command, posix=True)
    except ValueError:
        return command.split()


async def _execute(core: PBXCore, chan: Channel, command: str) -> tuple[str, bool]:
    """Run one AGI command; returns (result line(s), ends AsyncAGI)."""
    words = _split(command)
    upper = [w.upper() for w in words]
    try:
        if upper[:2] == ["ASYNCAGI", "BREAK"]:
            return "200 result=0\n", True
        if upper[:1] == ["ANSWER"]:
            if chan.state != UP:
                core.set_state(chan, UP)
            return "200 result=0\n", False
        if upper[:1] == ["HANGUP"]:
            target = chan if len(words) < 2 else core.find_channel(words[1])
            if target is None:
                return "200 result=-1\n", False
            core.request_hangup(target, 16)
            chan.check()
            return "200 result=1\n", False
        if upper[:2] == ["STREAM", "FILE"]:
            return await _stream_file(core, chan, words[2:]), False
        if upper[:2] == ["GET", "DATA"]:
            return await _get_data(core, chan, words[2:]), False
        if upper[:2] == ["SAY", "DIGITS"]:
            return await _say_digits(core, chan, words[2:]), False
        if upper[:2] == ["SET", "VARIABLE"]:
            if len(words) < 4:
                raise _UsageError("set variable")
            core.write(chan, words[2], words[3])
            return "200 result=1\n", False
        if upper[:2] == ["GET", "VARIABLE"]:
            if len(words) < 3:
                raise _UsageError("get variable")
            name = words[2]
            known = (
                name in chan.variables
                or "(" in name
                or name in ("EPOCH", "UNIQUEID", "CHANNEL", "EXTEN", "CONTEXT", "LINKEDID")
            )
            value = core.read(chan, name)
            if not known and value == "":
                return "200 result=0\n", False
            return f"200 result=1 ({value})\n", False
        if upper[:2] == ["SET", "CALLERID"]:
            if len(words) < 3:
                raise _UsageError("set callerid")
            raw = command.split(None, 2)[2]
            num, name = parse_callerid(raw)
            if "<" in raw and name is not None:
                # README fact: the quoted form sets the name only; the number
                # becomes <unknown>
                core.set_callerid(chan, "", name)
            elif num is not None:
                core.set_callerid(chan, num, None)
            else:
                core.set_callerid(chan, None, name or "")
            return "200 result=1\n", False
        if upper[:1] == ["EXEC"]:
            if len(words) < 2:
                raise _UsageError("exec")
            app = words[1]
            args = command.split(None, 2)[2] if len(words) > 2 else ""
            args = args.strip()
            if args.startswith('"') and args.endswith('"') and len(args) >= 2:
                args = args[1:-1]
            if getattr(core, "app_" + app.lower(), None) is None:
                return "200 result=-2\n", False
            app_name, _ = split_app(app)
            result = await core.exec_app(chan, app_name, args)
            return ("200 result=-1\n" if result == "hangup" else "200 result=0\n"), False
    except _UsageError as usage:
        text = _USAGE.get(str(usage), "")
        return (
            "520-Invalid command syntax.  Proper usage follows:\n"
            f"{text}\n520 End of proper usage.\n",
            False,
        )
    return "510 Invalid or unknown command\n", False


def _escape(words: list[str], index: int) -> str:
    return words[index] if len(words) > index else ""


async def _play_interruptible(
    core: PBXCore, chan: Channel, name: str, escape: str, offset: int = 0
) -> tuple[str | None, int]:
    """Play ``name``; a digit in ``escape`` stops it. Returns (digit, end position in samples)."""
    total = core.config.sounds.get(name, core.config.default_sound_samples)
    started = core.clock.now()
    remaining = max(0, total - offset) / 8000.0
    while True:
        digit = await chan.wait(remaining, digits=True)
        elapsed = core.clock.now() - started
        position = min(total, offset + int(elapsed * 8000))
        if digit is None:
            return None, total
        if digit in escape:
            return digit, position
        remaining = max(0.0, (total - position) / 8000.0)


async def _stream_file(core: PBXCore, chan: Channel, args: list[str]) -> str:
    if len(args) < 2:
        raise _UsageError("stream file")
    offset = int(args[2]) if len(args) > 2 and args[2].isdigit() else 0
    chan.flush_digits()
    digit, endpos = await _play_interruptible(core, chan, args[0], args[1], offset)
    core.set_var(chan, "PLAYBACKSTATUS", "SUCCESS")
    return f"200 result={ord(digit) if digit else 0} endpos={endpos}\n"


async def _say_digits(core: PBXCore, chan: Channel, args: list[str]) -> str:
    if len(args) < 2:
        raise _UsageError("say digits")
    for d in args[0]:
        digit, _ = await _play_interruptible(core, chan, f"digits/{d}", args[1])
        if digit is not None:
            return f"200 result={ord(digit)}\n"
    return "200 result=0\n"


async def _get_data(core: PBXCore, chan: Channel, args: list[str]) -> str:
    if len(args) < 1:
        raise _UsageError("get data")
    timeout = (
        int(args[1]) / 1000.0 if len(args) > 1 and args[1].isdigit() and int(args[1]) > 0 else 6.0
    )
    max_digits = int(args[2]) if len(args) > 2 and args[2].isdigit() else 1024
    chan.flush_digits()
    if chan.prompt_listener is not None:
        chan.prompt_listener(chan, args[0])
    collected = ""
    # the prompt is interrupted by any digit, which counts as the first one
    digit, _ = await _play_interruptible(core, chan, args[0], "0123456789*#")
    while True:
        if digit is not None:
            if digit == "#":
                return f"200 result={collected}\n"
            collected += digit
            if len(collected) >= max_digits:
                return f"200 result={collected}\n"
        digit = await chan.wait(timeout, digits=True)
        if digit is None:
            return f"200 result={collected} (timeout)\n"
