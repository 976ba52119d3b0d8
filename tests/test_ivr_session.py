"""AGI command formatting and result interpretation for one caller's IVR session."""

from __future__ import annotations

import pytest

from callcenter.ami.agi import AGIResult, parse_agi_result
from callcenter.ivr.errors import CallerHungUp, IvrCommandError
from callcenter.ivr.session import AGISession, quote


class ScriptedPBX:
    """Answers each AGI command with the next recorded reply line."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[str, str]] = []

    async def __call__(self, channel: str, command: str) -> AGIResult:
        self.sent.append((channel, command))
        return parse_agi_result(self.replies.pop(0))


def test_quote_follows_res_agi_parse_args() -> None:
    assert quote("hello-world") == '"hello-world"'
    assert quote("") == '""'
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("back\\slash") == '"back\\\\slash"'
    for bad in ("a\nb", "a\rb", "a\x00b"):
        with pytest.raises(IvrCommandError):
            quote(bad)


async def test_get_data_digits_timeout_and_partial_input() -> None:
    pbx = ScriptedPBX("200 result=2", "200 result= (timeout)", "200 result=12 (timeout)")
    session = AGISession("PJSIP/caller-0000000f", pbx)
    one = await session.get_data("beep", 6000, 1)
    assert (one.digits, one.timed_out) == ("2", False)
    silence = await session.get_data("beep", 3000, 1)
    assert silence.silent and silence.timed_out
    partial = await session.get_data("beep", 8000, 4)
    assert (partial.digits, partial.timed_out) == ("12", True)
    assert pbx.sent[0] == ("PJSIP/caller-0000000f", 'GET DATA "beep" 6000 1')


async def test_stream_file_interrupting_digit_is_its_ascii_code() -> None:
    pbx = ScriptedPBX("200 result=49 endpos=1234", "200 result=0 endpos=11234")
    session = AGISession("PJSIP/caller-1", pbx)
    assert await session.stream_file("wpl/en/danger-press-1", "1") == "1"
    assert await session.stream_file("wpl/en/welcome") is None
    assert pbx.sent[0][1] == 'STREAM FILE "wpl/en/danger-press-1" "1"'


async def test_hangup_mid_command_and_dead_channel_raise_caller_hung_up() -> None:
    session = AGISession("PJSIP/caller-1", ScriptedPBX("200 result=-1"))
    with pytest.raises(CallerHungUp):
        await session.get_data("beep", 3000, 1)
    session = AGISession(
        "PJSIP/caller-1",
        ScriptedPBX("511 Command Not Permitted on a dead channel or intercept routine"),
    )
    with pytest.raises(CallerHungUp):
        await session.answer()


async def test_unknown_command_reply_is_an_error_not_a_silent_success() -> None:
    session = AGISession("PJSIP/caller-1", ScriptedPBX("510 Invalid or unknown command"))
    with pytest.raises(IvrCommandError):
        await session.hand_back()


async def test_caller_label_replaces_name_and_number() -> None:
    pbx = ScriptedPBX("200 result=1", "200 result=1")
    await AGISession("PJSIP/caller-1", pbx).set_caller_label("T-4821AB")
    assert [c for _, c in pbx.sent] == [
        'SET VARIABLE "CALLERID(name)" "T-4821AB"',
        'SET VARIABLE "CALLERID(num)" "T-4821AB"',
    ]


async def test_non_dtmf_characters_never_reach_the_menu() -> None:
    session = AGISession("PJSIP/caller-1", ScriptedPBX("200 result=1A;2"))
    keyed = await session.get_data("beep", 3000, 3)
    assert keyed.digits == "12"
    with pytest.raises(IvrCommandError):
        await session.stream_file("x", "1;HANGUP")
