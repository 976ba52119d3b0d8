"""The AMI parser against recorded Asterisk 22 bytes, odd input, and its own shortcut."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter.ami import AMIParser, AMIProtocolError, Frame
from tests.support.parsers import parser_implementation  # noqa: F401 - runs each test on both

TRACES = Path(__file__).parent / "fixtures" / "asterisk"
TRACE_NAMES = sorted(path.stem for path in TRACES.glob("*.ami"))


def trace(name: str) -> bytes:
    return (TRACES / f"{name}.ami").read_bytes()


def feed_chunks(data: bytes, cuts: list[int], **options: object) -> list[Frame]:
    parser = AMIParser(**options)  # type: ignore[arg-type]
    frames: list[Frame] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        frames += parser.feed(data[last:cut])
        last = cut
    assert parser.buffered == 0
    return frames


def feed_bytewise(data: bytes, **options: object) -> tuple[list[Frame], AMIParser]:
    parser = AMIParser(**options)  # type: ignore[arg-type]
    frames: list[Frame] = []
    for i in range(len(data)):
        frames += parser.feed(data[i : i + 1])
    return frames, parser


def independent_event_count(data: bytes) -> int:
    """Frames starting with ``Event:``, counted without the parser."""
    banner, _, rest = data.partition(b"\r\n")
    assert banner.startswith(b"Asterisk Call Manager/")
    return sum(1 for raw in rest.split(b"\r\n\r\n") if raw.startswith(b"Event:"))


# -- recorded traces ---------------------------------------------------------


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_trace_whole_and_byte_by_byte_agree(name: str) -> None:
    data = trace(name)
    whole = AMIParser().feed(data)
    bytewise, parser = feed_bytewise(data)
    assert bytewise == whole
    assert parser.buffered == 0
    assert parser.bad_frames == 0
    assert whole[0].kind == "banner"
    events = [frame for frame in whole if frame.kind == "event"]
    assert len(events) == independent_event_count(data)


@pytest.mark.parametrize(("name", "events"), [("basic_call", 21), ("queue_asyncagi_call", 157)])
def test_known_event_counts(name: str, events: int) -> None:
    frames = AMIParser().feed(trace(name))
    assert (
        sum(frame.kind == "event" for frame in frames)
        == events
        == independent_event_count(trace(name))
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(TRACE_NAMES), data=st.data())
def test_trace_random_chunks_agree(name: str, data: st.DataObject) -> None:
    raw = trace(name)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=200))
    assert feed_chunks(raw, cuts) == AMIParser().feed(raw)


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_bare_lf_stream_gives_the_same_frames(name: str) -> None:
    data = trace(name)
    lf = data.replace(b"\r\n", b"\n")
    assert AMIParser().feed(lf) == AMIParser().feed(data)
    assert feed_chunks(lf, list(range(0, len(lf), 997))) == AMIParser().feed(data)


def test_frames_carry_what_asterisk_sent() -> None:
    frames = AMIParser().feed(trace("queue_asyncagi_call"))
    banner = frames[0]
    assert (banner.kind, banner.name) == ("banner", "Asterisk Call Manager/11.0.0")
    login = frames[1]
    assert (login.kind, login.name, login.action_id) == ("response", "Success", "lab-1")
    assert login["Message"] == "Authentication accepted"
    newchannel = next(f for f in frames if f.name == "Newchannel")
    assert newchannel["Channel"] == "PJSIP/caller-00000005"
    assert newchannel["AccountCode"] == ""  # "AccountCode: " with nothing after
    assert newchannel.action_id is None


def test_originate_response_is_an_event_with_a_response_header() -> None:
    frames = AMIParser().feed(trace("actions"))
    originate = next(f for f in frames if f.name == "OriginateResponse")
    assert originate.kind == "event"
    assert originate["Response"] == "Success"
    assert originate.action_id == "lab-14"


def test_header_names_match_case_insensitively() -> None:
    frames = AMIParser().feed(trace("queue_asyncagi_call"))
    executed = [f for f in frames if f.name == "AsyncAGIExec"]
    assert executed
    for frame in executed:
        # Asterisk sends "CommandId:" here but "CommandID:" is what the AGI action takes.
        assert frame["CommandID"] == frame["CommandId"] == frame.get("commandid")
        assert "COMMANDID" in frame
        assert frame.get_all("commandID") == [frame["CommandId"]]
    with pytest.raises(KeyError):
        executed[0]["NoSuchHeader"]


def test_command_output_asterisk_22_repeated_output_headers() -> None:
    frames = AMIParser().feed(trace("actions_misc"))
    command = next(f for f in frames if f.get("Message") == "Command output follows")
    assert command.kind == "response"
    output = command.get_all("Output")
    assert output[1:] == ["0 active channels", "0 active calls", "19 calls processed"]
    assert output[0].startswith("Channel ")
    assert command["Output"] == output[0]
    assert [value for name, value in command.pairs() if name == "Output"] == output


LEGACY_COMMAND = (
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: old-1\r\n"
    b"Channel              Location\r\n\r\n0 active channels\r\n--END COMMAND--\r\n\r\n"
)
PING = b"Response: Success\r\nActionID: old-2\r\nPing: Pong\r\n\r\n"


def test_legacy_follows_body_with_a_blank_line_stays_one_frame() -> None:
    data = b"Asterisk Call Manager/1.1\r\n" + LEGACY_COMMAND + PING
    whole = AMIParser().feed(data)
    assert [f.action_id for f in whole[1:]] == ["old-1", "old-2"]
    legacy = whole[1]
    assert (legacy.kind, legacy.name) == ("response", "Follows")
    assert legacy.get_all("Output") == ["Channel              Location", "0 active channels"]
    bytewise, parser = feed_bytewise(data)
    assert bytewise == whole
    assert parser.bad_frames == 0
    assert feed_chunks(data.replace(b"\r\n", b"\n"), [40, 90]) == whole


def test_repeated_headers_keep_every_value() -> None:
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: Newchannel\r\nChannel: PJSIP/caller-1\r\n"
        b"ChanVariable: WPL_CATEGORY=internet\r\nChanVariable: QUEUE_PRIO=10\r\n\r\n"
    )
    (_, frame) = AMIParser().feed(data)
    assert frame["ChanVariable"] == "WPL_CATEGORY=internet"
    assert frame.get_all("chanvariable") == ["WPL_CATEGORY=internet", "QUEUE_PRIO=10"]
    assert frame.get_all("Missing") == []
    assert list(frame.pairs())[-2:] == [
        ("ChanVariable", "WPL_CATEGORY=internet"),
        ("ChanVariable", "QUEUE_PRIO=10"),
    ]


# -- framing, h11 style --------------------------------------------------------

HANGUP = b"Event: Hangup\r\nChannel: PJSIP/caller-1\r\nCause: 16\r\n\r\n"


def test_trailing_partial_frame_stays_buffered_until_completed() -> None:
    parser = AMIParser(expect_banner=False)
    assert parser.feed(HANGUP + HANGUP[:20]) == AMIParser(expect_banner=False).feed(HANGUP)
    assert parser.buffered == 20
    assert parser.feed(HANGUP[20:-1]) == []
    assert parser.buffered == len(HANGUP) - 1
    (frame,) = parser.feed(HANGUP[-1:])
    assert frame.name == "Hangup" and frame["Cause"] == "16"
    assert parser.buffered == 0


def test_banner_is_one_line_without_a_blank_line() -> None:
    data = b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: a\r\n\r\n"
    frames = AMIParser().feed(data)
    assert [(f.kind, f.name) for f in frames] == [
        ("banner", "Asterisk Call Manager/11.0.0"),
        ("response", "Success"),
    ]
    parser = AMIParser()
    assert parser.feed(data[:10]) == []
    assert parser.buffered == 10
    assert parser.feed(data[10:]) == frames


def test_without_expect_banner_actions_parse() -> None:
    data = b"Action: Login\r\nActionID: 7\r\nUsername: lab\r\n\r\n"
    (frame,) = AMIParser(expect_banner=False).feed(data)
    assert (frame.kind, frame.name, frame.action_id, frame["Username"]) == (
        "action",
        "Login",
        "7",
        "lab",
    )


def test_devanagari_caller_name_split_across_feeds() -> None:
    name = "प्रिया शर्मा"
    data = f"Event: Newchannel\r\nCallerIDName: {name}\r\n\r\n".encode()
    cut = data.index(name.encode()) + 1  # inside the first 3-byte character
    parser = AMIParser(expect_banner=False)
    assert parser.feed(data[:cut]) == []
    (frame,) = parser.feed(data[cut:])
    assert frame["CallerIDName"] == name
    for cut in range(len(data)):
        assert feed_chunks(data, [cut], expect_banner=False)[0]["CallerIDName"] == name


def test_invalid_utf8_is_replaced_not_raised() -> None:
    data = b"Event: Newchannel\r\nCallerIDName: A\xff\xe0\xa4\r\n\r\n" + HANGUP
    frames = AMIParser(expect_banner=False).feed(data)
    assert frames[0]["CallerIDName"].startswith("A\ufffd")
    assert frames[1].name == "Hangup"
    bytewise, _ = feed_bytewise(data, expect_banner=False)
    assert bytewise == frames


# -- malformed input -------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        b"\x16\x03\x01\x02\x00garbage \xff\xfe\r\n\r\n",
        b"Event: Hangup\r\nthis line has no colon\r\n\r\n",
        b"Event: Hang\x00up\r\nChannel: x\r\n\r\n",
        b"Channel: PJSIP/x\r\nCause: 16\r\n\r\n",  # neither Event, Response nor Action
        b"Event: Hangup\r\nBad Name: spaces are not allowed in names\r\n\r\n",
    ],
)
def test_bad_frame_is_skipped_counted_and_the_next_one_parses(bad: bytes) -> None:
    whole_parser = AMIParser(expect_banner=False)
    frames = whole_parser.feed(HANGUP + bad + HANGUP)
    assert [f.name for f in frames] == ["Hangup", "Hangup"]
    assert whole_parser.bad_frames == 1
    (skipped,) = whole_parser.take_bad_frames()
    assert skipped.size > 0 and skipped.reason
    assert whole_parser.take_bad_frames() == []
    bytewise, parser = feed_bytewise(HANGUP + bad + HANGUP, expect_banner=False)
    assert bytewise == frames
    assert parser.bad_frames == 1


def test_oversized_complete_frame_is_skipped() -> None:
    big = b"Event: VarSet\r\nValue: " + b"x" * 2000 + b"\r\n\r\n"
    parser = AMIParser(expect_banner=False, max_frame_size=1000)
    frames = parser.feed(HANGUP + big + HANGUP)
    assert [f.name for f in frames] == ["Hangup", "Hangup"]
    assert parser.bad_frames == 1
    assert "exceeds" in parser.take_bad_frames()[0].reason


def test_default_bound_is_one_mebibyte() -> None:
    parser = AMIParser(expect_banner=False)
    assert parser.feed(b"Event: VarSet\r\nValue: " + b"x" * (1024 * 1024 - 100)) == []
    with pytest.raises(AMIProtocolError):
        parser.feed(b"x" * 200)


def test_endless_header_line_raises_and_frees_the_buffer() -> None:
    parser = AMIParser(expect_banner=False, max_frame_size=10_000)
    parser.feed(HANGUP[:30])
    with pytest.raises(AMIProtocolError):
        for _ in range(100):
            parser.feed(b"y" * 500)
    assert parser.buffered == 0
    assert parser.feed(HANGUP)[0].name == "Hangup"  # usable again after a reconnect


# -- work is linear in the bytes read ------------------------------------------------


def test_large_frame_fed_byte_by_byte_scans_each_byte_a_bounded_number_of_times() -> None:
    frame = b"Event: VarSet\r\nValue: " + b"v" * 50_000 + b"\r\n\r\n"
    frames, parser = feed_bytewise(frame + HANGUP, expect_banner=False)
    assert [f.name for f in frames] == ["VarSet", "Hangup"]
    total = len(frame) + len(HANGUP)
    assert parser.bytes_scanned <= 4 * total  # quadratic would be ~total**2 / 2
    assert parser.compactions == 2  # once per completed frame, not per byte


def test_many_frames_in_one_chunk_compact_the_buffer_once() -> None:
    parser = AMIParser(expect_banner=False)
    frames = parser.feed(HANGUP * 5000 + HANGUP[:10])
    assert len(frames) == 5000
    assert parser.compactions == 1
    assert parser.bytes_scanned <= len(HANGUP) * 5000 + 10
    assert parser.buffered == 10


# -- the learnt-shape shortcut never changes a result -----------------------------


def reference_parse(data: bytes) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """A deliberately naive CRLF parser: what the frames must be."""
    out = []
    for raw in data.split(b"\r\n\r\n")[:-1]:
        if not raw.strip(b"\r\n") or b"\x00" in raw:
            continue
        pairs = []
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or " " in name:
                break
            pairs.append((name, value[1:] if value.startswith(" ") else value))
        else:
            kinds = {"Event": "event", "Response": "response", "Action": "action"}
            found = [(kinds[n], v) for key in kinds for n, v in pairs if n == key]
            if found:
                # Frame.pairs() lists a repeated header's values at its first place.
                grouped: dict[str, list[str]] = {}
                for name, value in pairs:
                    grouped.setdefault(name, []).append(value)
                flat = [(name, value) for name, values in grouped.items() for value in values]
                out.append((found[0][0], found[0][1], flat))
    return out


SHAPE = b"Event: VarSet\r\nChannel: PJSIP/caller-1\r\nVariable: X\r\nValue: 1\r\n\r\n"
tricky_text = st.lists(
    st.sampled_from(["a", " ", ":", ": ", "\n", "\r", "\x00", "\u0928", "\r\n", "Value"]),
    max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(tricky_text, min_size=3, max_size=3), lines=st.integers(0, 2))
def test_odd_values_parse_as_the_naive_reference_says(values: list[str], lines: int) -> None:
    channel, variable, value = values
    odd = (
        f"Event: VarSet\r\nChannel: {channel}\r\n"
        + "".join(f"Variable: {variable}\r\n" for _ in range(lines))
        + f"Value: {value}\r\n\r\n"
    ).encode()
    data = SHAPE + odd + SHAPE
    if data.count(b"\r\n\r\n") != 3:
        return  # the odd value itself holds a blank line: a different frame split
    parser = AMIParser(expect_banner=False)
    parser.feed(SHAPE)  # learn the layout first, so the shortcut is tried
    frames = parser.feed(data)
    got = [(f.kind, f.name, list(f.pairs())) for f in frames]
    assert got == reference_parse(data)
    bytewise, _ = feed_bytewise(SHAPE + data, expect_banner=False)
    assert bytewise[1:] == frames


def test_value_holding_colon_space_and_lf_is_not_mistaken_for_two_headers() -> None:
    parser = AMIParser(expect_banner=False)
    shape = b"Event: Custom\r\nK: 1\r\nJ: 2\r\n\r\n"
    parser.feed(shape)
    (frame,) = parser.feed(b"Event: Custom\r\nK: a: \nJ: b\r\n\r\n")
    assert list(frame.pairs()) == [("Event", "Custom"), ("K", "a: \nJ: b")]
    (frame,) = parser.feed(b"Event: Custom\r\nK: a\r\nJ: \n\r\n\r\n")
    assert frame["J"] == "\n"
    assert parser.bad_frames == 0
