"""One caller's AsyncAGI session: typed AGI commands over AMI.

The session only formats commands and interprets results; sending goes through
an injected ``send(channel, command) -> AGIResult`` (``AMIClient.agi`` in
production), so the IVR runs against the real client, the simulator and tests
alike. Arguments are quoted the way res_agi.c's ``parse_args`` reads them
(double quotes group, backslash escapes), and anything with a line break is
refused: it would end the command and start another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from callcenter.ami.agi import AGIResult

from .errors import CallerHungUp, IvrCommandError

AGISend = Callable[[str, str], Awaitable[AGIResult]]

DTMF_DIGITS = frozenset("0123456789*#")


def quote(argument: str) -> str:
    """Quote one AGI argument (res_agi.c parse_args rules)."""
    if "\r" in argument or "\n" in argument or "\x00" in argument:
        raise IvrCommandError("AGI argument contains a line break or NUL")
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class KeyInput:
    """What the caller keyed at a prompt. ``digits`` holds only DTMF symbols."""

    digits: str
    timed_out: bool

    @property
    def silent(self) -> bool:
        return not self.digits


class AGISession:
    def __init__(self, channel: str, send: AGISend) -> None:
        self.channel = channel
        self._send = send
        self.commands_sent = 0

    async def run(self, command: str) -> AGIResult:
        self.commands_sent += 1
        result = await self._send(self.channel, command)
        if result.code == 511:
            # "Command Not Permitted on a dead channel": she hung up.
            raise CallerHungUp(self.channel)
        if not result.ok:
            raise IvrCommandError(f"AGI {command.split(' ', 2)[0:2]} failed: {result.code}")
        if result.result == "-1":
            # Asterisk reports -1 when the channel went away mid-command.
            raise CallerHungUp(self.channel)
        return result

    async def answer(self) -> None:
        await self.run("ANSWER")

    async def stream_file(self, sound: str, escape_digits: str = "") -> str | None:
        """Play ``sound``; return the digit that interrupted it, if any."""
        _check_digits(escape_digits)
        result = await self.run(f"STREAM FILE {quote(sound)} {quote(escape_digits)}")
        code = result.result_int or 0
        return chr(code) if code > 0 and chr(code) in DTMF_DIGITS else None

    async def get_data(self, sound: str, timeout_ms: int, max_digits: int) -> KeyInput:
        """Play ``sound`` and collect up to ``max_digits`` keys.

        The timeout is also Asterisk's wait between digits. Anything that is not
        a DTMF symbol is dropped: the digits are later used as menu keys or a
        complaint reference and are never trusted as they come.
        """
        if timeout_ms <= 0 or max_digits <= 0:
            raise IvrCommandError("GET DATA needs a positive timeout and digit count")
        result = await self.run(f"GET DATA {quote(sound)} {int(timeout_ms)} {int(max_digits)}")
        raw = result.result or ""
        digits = "".join(ch for ch in raw if ch in DTMF_DIGITS)[:max_digits]
        return KeyInput(digits=digits, timed_out=result.timed_out)

    async def say_digits(self, digits: str, escape_digits: str = "") -> None:
        _check_digits(digits)
        _check_digits(escape_digits)
        await self.run(f"SAY DIGITS {digits} {quote(escape_digits)}")

    async def set_variable(self, name: str, value: str) -> None:
        if not name or any(ch.isspace() for ch in name):
            raise IvrCommandError("invalid channel variable name")
        await self.run(f"SET VARIABLE {quote(name)} {quote(value)}")

    async def get_variable(self, name: str) -> str | None:
        result = await self.run(f"GET VARIABLE {quote(name)}")
        return result.data if result.result == "1" else None

    async def set_caller_label(self, label: str) -> None:
        """Replace CALLERID name and number with ``label`` (a token or fixed label).

        ``SET CALLERID "x" <y>`` sets only the name on Asterisk 22 (see the
        traces' README), so both parts are set as variables.
        """
        await self.set_variable("CALLERID(name)", label)
        await self.set_variable("CALLERID(num)", label)

    async def hangup(self) -> None:
        await self.run("HANGUP")

    async def hand_back(self) -> None:
        """ASYNCAGI BREAK: the dialplan continues after AGI(agi:async)."""
        await self.run("ASYNCAGI BREAK")


def _check_digits(digits: str) -> None:
    if any(ch not in DTMF_DIGITS for ch in digits):
        raise IvrCommandError("escape digits must be DTMF symbols")
