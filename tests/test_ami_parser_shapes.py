"""The parser's fast paths give exactly what the careful path gives.

Each test runs on both implementations (tests/support/parsers.py): the pure Python
parser's per-layout code, compiled once a layout repeats, and the C fast path of
callcenter/ami/_speedups.pyx, which learns no layouts but gets the same inputs.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.synthetic import chunks, synthetic_stream
from callcenter.ami import AMIParser, AMIProtocolError, Frame
from callcenter.ami.parser import _COMPILE_AFTER, _MAX_SHAPES
from tests.support.parsers import parser_implementation  # noqa: F401 - runs each test on both
from tests.test_ami_parser import feed_bytewise, reference_parse, tricky_text

CUSTOM = b"Event: Custom\r\nK: 1\r\nJ: 2\r\n\r\n"


def as_tuples(frames: list[Frame]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [(f.kind, f.name, list(f.pairs())) for f in frames]


def compiled_parser(*layouts: bytes) -> AMIParser:
    """A parser that has made enough frames of each layout to compile code for it."""
    parser = AMIParser(expect_banner=False)
    for layout in layouts:
        assert len(parser.feed(layout * (_COMPILE_AFTER + 1))) == _COMPILE_AFTER + 1
    if parser.compiled:
        return parser  # the C fast path: no layouts to learn, the same frames to make
    compiled = [s for s in parser._shapes.values() if s.build != s._build_generic]
    assert len(compiled) == len(layouts)  # the shortcut under test is the compiled one
    return parser


def test_benchmark_stream_parses_as_the_naive_reference_says() -> None:
    data = synthetic_stream(3000, banner=False)
    expected = reference_parse(data)
    assert len(expected) == 3000
    for size in (65536, 4096, 97):
        parser = AMIParser(expect_banner=False)
        frames = [frame for piece in chunks(data, size) for frame in parser.feed(piece)]
        assert as_tuples(frames) == expected
        assert parser.bad_frames == 0 and parser.buffered == 0


@settings(max_examples=300, deadline=None)
@given(values=st.lists(tricky_text, min_size=3, max_size=3), lines=st.integers(0, 2))
def test_odd_values_in_a_compiled_layout_parse_as_the_reference_says(
    values: list[str], lines: int
) -> None:
    shape = b"Event: VarSet\r\nChannel: PJSIP/caller-1\r\nVariable: X\r\nValue: 1\r\n\r\n"
    channel, variable, value = values
    odd = (
        f"Event: VarSet\r\nChannel: {channel}\r\n"
        + "".join(f"Variable: {variable}\r\n" for _ in range(lines))
        + f"Value: {value}\r\n\r\n"
    ).encode()
    data = shape + odd + shape
    if data.count(b"\r\n\r\n") != 3:
        return  # the odd value itself holds a blank line: a different frame split
    frames = compiled_parser(shape).feed(data)
    assert as_tuples(frames) == reference_parse(data)


def test_value_ending_in_colon_space_at_the_end_of_a_frame() -> None:
    # Marked, this frame splits into one token too many: "J\0", "v\0", "".
    parser = compiled_parser(CUSTOM)
    (frame,) = parser.feed(b"Event: Custom\r\nK: 1\r\nJ: v: \r\n\r\n")
    assert list(frame.pairs()) == [("Event", "Custom"), ("K", "1"), ("J", "v: ")]


def test_lone_lf_after_colon_space_among_ordinary_frames() -> None:
    parser = compiled_parser(CUSTOM)
    odd = b"Event: Custom\r\nK: a: \nJ: b\r\n\r\n"
    data = CUSTOM * 3 + odd + CUSTOM * 3 + b"Event: Custom\r\nK: a\r\nJ: \n\r\n\r\n" + CUSTOM
    frames = parser.feed(data)
    assert as_tuples(frames) == reference_parse(data)
    assert frames[3]["K"] == "a: \nJ: b" and "J" not in frames[3]
    assert frames[7]["J"] == "\n"
    assert parser.bad_frames == 0


def test_one_event_name_in_two_layouts_alternating() -> None:
    with_time = b"Event: Newchannel\r\nTimestamp: 1.5\r\nChannel: PJSIP/a-1\r\n\r\n"
    without = b"Event: Newchannel\r\nChannel: PJSIP/b-2\r\nUniqueid: 9.1\r\n\r\n"
    parser = compiled_parser(with_time, without)
    data = (with_time + without) * 20
    frames = parser.feed(data)
    assert as_tuples(frames) == reference_parse(data)
    assert [f.get("Timestamp") for f in frames[:2]] == ["1.5", None]


def test_response_layout_keeps_its_action_id() -> None:
    response = b"Response: Success\r\nActionID: 17\r\nMessage: Added\r\n\r\n"
    parser = compiled_parser(response)
    (frame,) = parser.feed(response.replace(b"17", b"18"))
    assert (frame.kind, frame.name, frame.action_id) == ("response", "Success", "18")
    (frame,) = parser.feed(b"Response: Error\r\nActionID: 19\r\nMessage: No\r\n\r\n")
    assert (frame.kind, frame.name, frame.action_id) == ("response", "Error", "19")


def test_header_names_that_look_like_code_are_only_names() -> None:
    names = ["X'", 'Y"', "Z\\", "Q')\nraise_SystemExit#", "नाम", "{T}"]
    layout = b"Event: Odd\r\n" + b"".join(f"{n}: {i}\r\n".encode() for i, n in enumerate(names))
    parser = compiled_parser(layout + b"\r\n")
    (frame,) = parser.feed(layout.replace(b": 0", b": zero") + b"\r\n")
    assert list(frame.pairs()) == [("Event", "Odd"), (names[0], "zero")] + [
        (name, str(i)) for i, name in enumerate(names) if i
    ]


def test_devanagari_and_invalid_utf8_in_a_compiled_layout() -> None:
    shape = "Event: Newstate\r\nCallerIDName: {}\r\nUniqueid: 1.{}\r\n\r\n"
    parser = compiled_parser(shape.format("Pooja", 0).encode())
    data = shape.format("प्रिया शर्मा", 1).encode() + b"Event: Newstate\r\nCallerIDName: \xe0\xa4\r\n"
    data += b"Uniqueid: 1.2\r\n\r\n"
    frames = [f for piece in chunks(data, 5) for f in parser.feed(piece)]
    assert [f["CallerIDName"] for f in frames] == ["प्रिया शर्मा", "\ufffd"]
    assert as_tuples(frames) == reference_parse(data)


def test_a_stream_inventing_layouts_stays_bounded_and_correct() -> None:
    rng = random.Random(1090)
    parser = AMIParser(expect_banner=False)
    pieces = [
        f"Event: UserEvent\r\nH{rng.randrange(10**6)}: x\r\nH{i}: y\r\n\r\n".encode()
        for i in range(3 * _MAX_SHAPES)
    ]
    data = b"".join(piece * 2 for piece in pieces)
    frames = parser.feed(data)
    assert as_tuples(frames) == reference_parse(data)
    assert len(parser._shapes) <= _MAX_SHAPES
    assert len(parser._shape_by_first_value) <= _MAX_SHAPES
    # Seen twice each: none worth compiling code for.
    assert all(s.build == s._build_generic for s in parser._shapes.values())


def test_byte_by_byte_feeding_agrees_once_compiled() -> None:
    parser = compiled_parser(CUSTOM)
    data = CUSTOM * 2 + b"Event: Custom\r\nK: \xe0\xa4\xa8\r\nJ: \r\n\r\n" + CUSTOM
    whole = parser.feed(data)
    bytewise, _ = feed_bytewise(CUSTOM * (_COMPILE_AFTER + 1) + data, expect_banner=False)
    assert bytewise[_COMPILE_AFTER + 1 :] == whole
    assert whole[2]["K"] == "\u0928" and whole[2]["J"] == ""


# -- the compiled fast path and the pure Python parser agree on any bytes ------------

_piece = st.sampled_from([
    b"Event", b"event", b"EVENT", b"Response", b"Action", b"ActionID", b"actionid",
    b"Channel", b"Value", b"Output", b": ", b":", b" ", b"\r\n", b"\r", b"\n", b"\x00",
    b"\xe0\xa4\xa8", b"\xe0\xa4", b"\xff", b"x", b"Success", b"\t", b"(", b"/",
])
_line = st.lists(_piece, min_size=0, max_size=6).map(b"".join)
_frame = st.lists(_line, min_size=1, max_size=6).map(lambda lines: b"\r\n".join(lines))


@settings(max_examples=500, deadline=None)
@given(frames=st.lists(_frame, min_size=1, max_size=5), cut=st.integers(1, 64))
def test_compiled_and_pure_python_parsers_agree_on_hostile_bytes(
    frames: list[bytes], cut: int
) -> None:
    parser_module = pytest.importorskip("callcenter.ami._speedups")
    assert parser_module is not None
    data = b"".join(frame + b"\r\n\r\n" for frame in frames)
    results = []
    for compiled in (True, False):
        whole = AMIParser(expect_banner=False, compiled=compiled, max_frame_size=48)
        try:
            got = whole.feed(data)
        except AMIProtocolError:
            got = None  # framing lost: both must say so
        pieces = AMIParser(expect_banner=False, compiled=compiled, max_frame_size=48)
        try:
            chunked = [f for piece in chunks(data, cut) for f in pieces.feed(piece)]
        except AMIProtocolError:
            chunked = None
        results.append((
            None if got is None else [(f.kind, f.name, f.action_id, list(f.pairs())) for f in got],
            None if got is None else [b.reason for b in whole.take_bad_frames()],
            None if chunked is None else [(f.kind, f.name, f.action_id) for f in chunked],
        ))
    assert results[0] == results[1]
