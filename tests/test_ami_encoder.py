"""Encoding actions: no header injection, ActionIDs, and a round trip through the parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.ami import AMIEncodeError, AMIParser, encode_action
from callcenter.ami.encoder import encode_frame


def parse_one(data: bytes):  # type: ignore[no-untyped-def]
    (frame,) = AMIParser(expect_banner=False).feed(data)
    return frame


@pytest.mark.parametrize(
    "value",
    [
        "T-4821\r\nAction: Hangup",
        "line\nAction: Originate",
        "trailing CR\r",
        "\r\n",
    ],
)
def test_cr_or_lf_in_a_value_is_refused(value: str) -> None:
    with pytest.raises(AMIEncodeError):
        encode_action("Setvar", {"Variable": "CALLERID(name)", "Value": value})
    with pytest.raises(AMIEncodeError):
        encode_action("Originate", {"Variable": ["WPL_CALLBACK=1", value]})
    with pytest.raises(AMIEncodeError):
        encode_action(value)
    with pytest.raises(ValueError):  # AMIEncodeError is a ValueError for callers
        encode_frame(("Event", "UserEvent"), {"Note": value})


@pytest.mark.parametrize("name", ["Bad\r\nName", "Bad\nName", "Has:Colon", "", " Padded"])
def test_bad_header_names_are_refused(name: str) -> None:
    with pytest.raises(AMIEncodeError):
        encode_action("Ping", {name: "x"})


def test_action_id_is_added_when_missing_and_unique() -> None:
    data, action_id = encode_action("Ping")
    other, other_id = encode_action("Ping")
    assert action_id and action_id != other_id
    frame = parse_one(data)
    assert (frame.kind, frame.name, frame.action_id) == ("action", "Ping", action_id)
    assert parse_one(other).action_id == other_id


def test_given_action_id_is_kept() -> None:
    data, action_id = encode_action("Ping", {"ActionID": "mine-1"})
    assert action_id == "mine-1"
    assert data.count(b"ActionID") == 1
    data, action_id = encode_action("Ping", action_id="kw-2")
    assert action_id == "kw-2" and parse_one(data).action_id == "kw-2"
    # Given in any case, it still wins and is not doubled.
    data, action_id = encode_action("Ping", {"actionid": "lower-3"}, action_id="kw-4")
    assert action_id == "lower-3" and data.lower().count(b"actionid") == 1


def test_repeated_headers_bools_and_numbers() -> None:
    data, _ = encode_action(
        "Originate",
        {
            "Channel": "Local/s@lab-callback",
            "Async": True,
            "EarlyMedia": False,
            "Timeout": 30000,
            "Variable": ["WPL_CALLBACK=1", "WPL_CASE=42"],
            "Account": None,  # left out
        },
    )
    assert b"Async: true\r\n" in data and b"EarlyMedia: false\r\n" in data
    assert b"Account" not in data
    assert data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1
    frame = parse_one(data)
    assert frame.get_all("Variable") == ["WPL_CALLBACK=1", "WPL_CASE=42"]
    assert frame["Timeout"] == "30000"


def test_encode_frame_for_the_simulator() -> None:
    data = encode_frame(("Event", "Hangup"), {"Channel": "PJSIP/caller-1", "Cause": 16})
    frame = parse_one(data)
    assert (frame.kind, frame.name, frame["Cause"]) == ("event", "Hangup", "16")


header_name = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True)
header_value = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
    max_size=30,
)


@given(
    headers=st.lists(st.tuples(header_name, header_value), max_size=12),
    action=header_name,
)
def test_round_trip_through_the_parser(headers: list[tuple[str, str]], action: str) -> None:
    headers = [(n, v) for n, v in headers if n.lower() not in ("action", "actionid", "event")]
    headers = [(n, v) for n, v in headers if "\x00" not in v]  # a NUL frame is refused
    data, action_id = encode_action(action, headers)
    frame = parse_one(data)
    assert (frame.kind, frame.name, frame.action_id) == ("action", action, action_id)
    sent = [(n, v) for n, v in frame.pairs() if n not in ("Action", "ActionID")]
    # The parser keeps repeated headers grouped under their first position.
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name, []).append(value)
    assert sent == [(n, v) for n, values in grouped.items() for v in values]
