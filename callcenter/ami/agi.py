"""AsyncAGI result lines and environments: text in, values out, no I/O.

Over AMI, Asterisk reports an AGI command's outcome in the ``AsyncAGIExec``
event as ``Result: 200%20result%3D12%0A``: the line a FastAGI script would have
read, URL-encoded (``res/res_agi.c`` encodes with ``ast_uri_encode``, so a
space is ``%20``, never ``+``). The shapes that matter (all seen on Asterisk 22
or written by ``agi_handle_command``):

* ``200 result=2``                 GET DATA, one digit
* ``200 result=12``                GET DATA, two digits
* ``200 result= (timeout)``        GET DATA, the caller pressed nothing
* ``200 result=12 (timeout)``      GET DATA, digits then the inter-digit timeout
* ``200 result=0 endpos=11234``    STREAM FILE played to the end
* ``200 result=1 (hello world)``   GET VARIABLE: the value in parentheses
* ``510 Invalid or unknown command``
* ``511 Command Not Permitted on a dead channel or intercept routine``
* ``520-Invalid command syntax.  Proper usage follows:`` + usage lines +
  ``520 End of proper usage.`` (some versions omit the line end before the last
  line)

Values here can hold what a caller typed (GET DATA digits) or a channel
variable that may be her number, so :class:`AGIResult` keeps them out of its
``repr`` and nothing here logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote

from .errors import AGIError

_CODE_LINE = re.compile(r"(?P<code>\d{3})(?P<sep>[ -]|$)(?P<text>.*)")
# ``result=<value>`` then an optional ``(<data>)`` then ``key=value`` pairs. The
# data is greedy up to the last ")" that is followed only by pairs, so a
# variable value holding ")" or " x=y" stays whole.
_SUCCESS_TEXT = re.compile(
    r"result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?P<extras>(?: [^\s=()]+=\S*)*)\s*"
)
_END_OF_USAGE = "End of proper usage."

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True, repr=False)
class AGIResult:
    """The outcome of one AGI command.

    ``result`` is the text after ``result=`` (``""`` when GET DATA timed out
    before any digit, ``None`` when the line has no ``result=``, as for 5xx
    codes); ``data`` the parenthesised part (``"timeout"``, a variable's value);
    ``extras`` the ``key=value`` pairs after it (``endpos``); ``message`` the
    text of a non-200 line; ``usage`` the body of a ``520-`` usage reply.
    """

    code: int
    result: str | None = None
    data: str | None = None
    extras: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    message: str = ""
    usage: str = ""

    @property
    def ok(self) -> bool:
        """Asterisk ran the command (it may still report ``result=-1``)."""
        return self.code == 200

    @property
    def timed_out(self) -> bool:
        """The ``(timeout)`` marker: GET DATA / WAIT FOR DIGIT ran out of time."""
        return self.data == "timeout"

    @property
    def endpos(self) -> int | None:
        """Where playback stopped (STREAM FILE, CONTROL STREAM FILE...), in samples."""
        value = self.extras.get("endpos")
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            return None

    @property
    def result_int(self) -> int | None:
        """``result`` as a number (``-1`` failure, ``0``/``1`` flags, a DTMF code)."""
        if not self.result:
            return None
        try:
            return int(self.result)
        except ValueError:
            return None

    def __repr__(self) -> str:
        # Never the values: GET DATA digits or a variable may be a phone number.
        parts = [f"code={self.code}"]
        if self.result is not None:
            parts.append(f"result=<{len(self.result)} chars>")
        if self.timed_out:
            parts.append("timed_out=True")
        elif self.data is not None:
            parts.append(f"data=<{len(self.data)} chars>")
        if self.extras:
            parts.append(f"extras={sorted(self.extras)}")
        return f"AGIResult({', '.join(parts)})"


def parse_agi_result(text: str) -> AGIResult:
    """Parse a decoded AGI reply (one line, or a ``NNN-`` multi-line reply).

    Raises :class:`AGIError` when no line starts with a three-digit code.
    """
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line]
    # Skip anything before the status line (a stray "HANGUP" notice, say).
    index = next((i for i, line in enumerate(lines) if _CODE_LINE.fullmatch(line)), None)
    if index is None:
        raise AGIError("AGI reply without a status code")
    match = _CODE_LINE.fullmatch(lines[index])
    assert match is not None
    code = int(match["code"])
    text_after = match["text"]
    if match["sep"] == "-":
        return _multi_line(code, text_after, lines[index + 1 :])
    if code == 200:
        success = _SUCCESS_TEXT.fullmatch(text_after)
        if success is not None:
            extras = _extras(success["extras"])
            return AGIResult(
                code=code,
                result=success["result"],
                data=success["data"],
                extras=extras,
            )
    return AGIResult(code=code, message=text_after.strip())


def decode_agi_result(encoded: str) -> AGIResult:
    """Parse the URL-encoded ``Result:`` header of an ``AsyncAGIExec`` event."""
    return parse_agi_result(unquote(encoded))


def parse_agi_env(encoded: str) -> dict[str, str]:
    """The ``agi_*`` variables of an ``AsyncAGIStart`` event's URL-encoded ``Env:``.

    The result holds the caller's number (``agi_callerid``): hand it to the
    identity vault, never to a log.
    """
    env: dict[str, str] = {}
    for line in unquote(encoded).split("\n"):
        name, sep, value = line.partition(":")
        if sep and name:
            env[name.strip()] = value[1:] if value.startswith(" ") else value
    return env


def _extras(text: str) -> Mapping[str, str]:
    if not text:
        return _EMPTY
    pairs: dict[str, str] = {}
    for item in text.split():
        name, _, value = item.partition("=")
        pairs[name] = value
    return MappingProxyType(pairs)


def _multi_line(code: int, first: str, rest: list[str]) -> AGIResult:
    body = list(rest)
    closing = f"{code} {_END_OF_USAGE}"
    if body:
        last = body[-1]
        if last == closing or (
            _CODE_LINE.fullmatch(last) is not None and last.startswith(f"{code} ")
        ):
            body.pop()
        elif last.endswith(closing):
            # Seen from older res_agi: the usage text runs into the final line.
            body[-1] = last[: -len(closing)]
    return AGIResult(code=code, message=first.strip(), usage="\n".join(body).strip("\n"))
