"""AGI result lines and AsyncAGI environments: pure parsing, every shape Asterisk sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.ami import AGIError, AMIParser
from callcenter.ami.agi import AGIResult, decode_agi_result, parse_agi_env, parse_agi_result

TRACES = Path(__file__).parent / "fixtures" / "asterisk"


def test_one_digit() -> None:
    result = parse_agi_result("200 result=2\n")
    assert (result.code, result.result, result.data) == (200, "2", None)
    assert result.ok and not result.timed_out
    assert result.result_int == 2


def test_digits_then_timeout_marker() -> None:
    result = parse_agi_result("200 result=12 (timeout)\n")
    assert result.result == "12"
    assert result.timed_out


def test_timeout_without_a_digit_is_an_empty_result_not_a_missing_one() -> None:
    result = parse_agi_result("200 result= (timeout)\n")
    assert result.result == ""
    assert result.result_int is None
    assert result.timed_out
    assert result.ok


def test_playback_end_position() -> None:
    result = parse_agi_result("200 result=49 endpos=1234\n")
    assert result.result == "49"
    assert result.endpos == 1234
    assert dict(result.extras) == {"endpos": "1234"}
    assert result.data is None


def test_data_and_end_position_together() -> None:
    result = parse_agi_result("200 result=0 (foobar) endpos=1234")
    assert (result.result, result.data, result.endpos) == ("0", "foobar", 1234)


def test_variable_value_with_spaces_and_parentheses_stays_whole() -> None:
    result = parse_agi_result("200 result=1 (hello (big) world) x=y)\n")
    assert result.result == "1"
    assert result.data == "hello (big) world) x=y"
    assert result.extras == {}


def test_failure_result() -> None:
    result = parse_agi_result("200 result=-1\n")
    assert result.ok
    assert result.result_int == -1


def test_invalid_command() -> None:
    result = parse_agi_result("510 Invalid or unknown command\n")
    assert result.code == 510
    assert not result.ok
    assert result.result is None
    assert result.message == "Invalid or unknown command"


def test_dead_channel() -> None:
    result = parse_agi_result("511 Command Not Permitted on a dead channel or intercept routine\n")
    assert result.code == 511
    assert result.message.startswith("Command Not Permitted")


def test_multi_line_usage() -> None:
    text = (
        "520-Invalid command syntax.  Proper usage follows:\n"
        " Usage: GET DATA <file to be streamed> [timeout] [max digits]\n"
        "   Stream the given file, and receive DTMF data.\n"
        "520 End of proper usage.\n"
    )
    result = parse_agi_result(text)
    assert result.code == 520
    assert not result.ok
    assert result.message == "Invalid command syntax.  Proper usage follows:"
    assert result.usage.splitlines() == [
        " Usage: GET DATA <file to be streamed> [timeout] [max digits]",
        "   Stream the given file, and receive DTMF data.",
    ]


def test_multi_line_usage_without_the_last_line_end() -> None:
    text = (
        "520-Invalid command syntax.  Proper usage follows:\n"
        "Usage: database put <family> <key> <value>520 End of proper usage.\n"
    )
    result = parse_agi_result(text)
    assert result.code == 520
    assert result.usage == "Usage: database put <family> <key> <value>"


def test_decode_url_encoded_result() -> None:
    assert decode_agi_result("200%20result%3D0%20endpos%3D11234%0A").endpos == 11234
    timed_out = decode_agi_result("200%20result%3D%20(timeout)%0A")
    assert timed_out.timed_out and timed_out.result == ""
    usage = decode_agi_result(
        "520-Invalid%20command%20syntax.%20%20Proper%20usage%20follows%3A%0A"
        "Usage%3A%20x%0A520%20End%20of%20proper%20usage.%0A"
    )
    assert (usage.code, usage.usage) == (520, "Usage: x")


def test_a_plus_is_a_plus() -> None:
    # res_agi encodes a space as %20, so "+" in a value is literal (GET VARIABLE).
    assert decode_agi_result("200%20result%3D1%20(a+b)%0A").data == "a+b"


@pytest.mark.parametrize("text", ["", "\n", "HANGUP\n", "result=1", "20 result=1"])
def test_no_status_code_is_an_agi_error(text: str) -> None:
    with pytest.raises(AGIError):
        parse_agi_result(text)


def test_a_stray_line_before_the_status_is_skipped() -> None:
    assert parse_agi_result("HANGUP\n200 result=1\n").result == "1"


def test_repr_never_shows_the_values() -> None:
    # GET DATA digits or GET VARIABLE CALLERID(num) may be a caller's number.
    result = parse_agi_result("200 result=5550100 (5550100)\n")
    assert "5550100" not in repr(result)
    assert "code=200" in repr(result)


def test_every_result_recorded_from_asterisk_parses() -> None:
    seen: dict[str, AGIResult] = {}
    for path in sorted(TRACES.glob("*.ami")):
        for frame in AMIParser().feed(path.read_bytes()):
            if frame.kind == "event" and frame.name == "AsyncAGIExec":
                seen[frame["Result"]] = decode_agi_result(frame["Result"])
    by_text = {k: (v.code, v.result, v.data, v.endpos) for k, v in seen.items()}
    assert by_text == {
        "200%20result%3D0%20endpos%3D11234%0A": (200, "0", None, 11234),
        "200%20result%3D0%20endpos%3D3404%0A": (200, "0", None, 3404),
        "200%20result%3D0%0A": (200, "0", None, None),
        "200%20result%3D2%0A": (200, "2", None, None),
        "200%20result%3D1%0A": (200, "1", None, None),
        "200%20result%3D%20(timeout)%0A": (200, "", "timeout", None),
        "200%20result%3D12%0A": (200, "12", None, None),
    }


def test_async_agi_start_environment() -> None:
    frames = AMIParser().feed((TRACES / "queue_asyncagi_call.ami").read_bytes())
    start = next(f for f in frames if f.name == "AsyncAGIStart")
    env = parse_agi_env(start["Env"])
    assert env["agi_request"] == "async"
    assert env["agi_channel"] == "PJSIP/caller-00000005"
    assert env["agi_uniqueid"] == "1795327929.5"
    assert env["agi_extension"] == "1090"
    assert env["agi_accountcode"] == ""
    assert env["agi_calleridname"] == "Lab Caller"
