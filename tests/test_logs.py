"""callcenter.logs: no caller number survives into formatted log output, by any path."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.logs import REDACTED, configure_logging, is_sensitive_key, redact_text

MOBILE = "9876543210"
FORMATS = [
    "+91 98765 43210",
    "+919876543210",
    "+91-98765-43210",
    "09876543210",
    "098765 43210",
    "9876543210",
    "98765 43210",
    "98765-43210",
    "9876 543 210",
    "(+91) 98765-43210",
    "0091 98765 43210",
]


def digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def leaks(output: str, national: str = MOBILE) -> bool:
    """True if the number's last 8 digits can still be read, ignoring any separators."""
    tail = national[-8:]
    return any(tail in digits(chunk) for chunk in re.split(r"[\"\n]", output)) or (
        national[:5] in output and national[5:] in output
    )


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("DEBUG", json=True, stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)
        structlog.reset_defaults()


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("number", FORMATS)
def test_every_format_is_masked_in_text(number: str) -> None:
    masked = redact_text(f"incoming call from {number} on trunk up-east")
    assert not leaks(masked), masked
    assert "incoming call from" in masked and "trunk up-east" in masked


@pytest.mark.parametrize("number", FORMATS)
def test_structlog_message_and_values(output: io.StringIO, number: str) -> None:
    log = structlog.get_logger("callcenter.ivr")
    log.info(f"caller {number} chose option 2", queue="counsellors", note=f"cb {number}")
    [entry] = records(output)
    assert not leaks(json.dumps(entry))
    assert entry["queue"] == "counsellors" and entry["level"] == "info"


@pytest.mark.parametrize("number", FORMATS)
def test_stdlib_logging_path(output: io.StringIO, number: str) -> None:
    logger = logging.getLogger("callcenter.ami.client")
    logger.warning("originate to %s failed", number)
    logger.info("frame", extra={"CallerIDNum": number, "Uniqueid": "1795329071.123"})
    try:
        raise ValueError(f"bad dial string PJSIP/{number}@trunk")
    except ValueError:
        logger.exception("callback for %s could not start", number)
    text = output.getvalue()
    assert not leaks(text), text
    entries = records(output)
    assert entries[1]["CallerIDNum"] == REDACTED
    assert entries[1]["Uniqueid"] == "1795329071.123", "AMI ids stay readable"
    assert "ValueError" in str(entries[2]["exception"])


def test_ami_frame_as_a_value(output: io.StringIO) -> None:
    frame = {
        "Event": "Newchannel",
        "Channel": f"PJSIP/{MOBILE}-00000007",
        "CallerIDNum": MOBILE,
        "CallerIDName": "<unknown>",
        "ConnectedLineNum": "0" + MOBILE,
        "DestCallerIDNum": MOBILE,
        "Exten": "1090",
        "Uniqueid": "1795329071.123",
        "Linkedid": "1795329071.123",
        "Timestamp": "1795329071.774810",
    }
    env = f"agi_callerid%3A%20{MOBILE}%0Aagi_dnid%3A%201090%0A"
    structlog.get_logger("callcenter.pbx").debug(
        "event", frame=frame, Env=env, raw=f"CallerIDNum: {MOBILE}\r\n".encode()
    )
    [entry] = records(output)
    assert not leaks(json.dumps(entry))
    logged = entry["frame"]
    assert isinstance(logged, dict)
    assert logged["Exten"] == "1090" and logged["Uniqueid"] == "1795329071.123"
    assert logged["Channel"] == "PJSIP/[number]-00000007"
    assert entry["Env"] == REDACTED


def test_integers_and_positional_args(output: io.StringIO) -> None:
    log = structlog.get_logger("callcenter.followups")
    log.info("callback %s scheduled", int(MOBILE), attempts=3, target=int("91" + MOBILE))
    [entry] = records(output)
    assert not leaks(json.dumps(entry))
    assert entry["attempts"] == 3


def test_console_renderer_is_redacted_too() -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", json=False, stream=stream)
    try:
        structlog.get_logger("x").info("sms to +91 98765 43210", phone=MOBILE)
        logging.getLogger("y").error("dial %s", "098765-43210")
    finally:
        logging.getLogger().removeHandler(handler)
        structlog.reset_defaults()
    assert not leaks(stream.getvalue()), stream.getvalue()
    assert "sms to [number]" in stream.getvalue()


def test_configure_twice_keeps_one_handler() -> None:
    first = configure_logging("INFO", stream=io.StringIO())
    second = configure_logging("INFO", stream=io.StringIO())
    try:
        root = logging.getLogger()
        assert first not in root.handlers and second in root.handlers
    finally:
        logging.getLogger().removeHandler(second)
        structlog.reset_defaults()


@pytest.mark.parametrize(
    "text",
    [
        "Uniqueid: 1795329071.123 Linkedid: 1795329071.120",
        "Timestamp: 1795329071.774810",
        "Channel: PJSIP/agent1-00000003",
        "connecting to 10.20.0.5:5038",
        "at 2026-11-22T08:00:01.123456+00:00",
        "queue counsellors has 12 callers, longest 345 s, dial 1090 or 112",
    ],
)
def test_what_is_not_a_number_stays_readable(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("CallerIDNum", True),
        ("ConnectedLineNum", True),
        ("DestCallerIDNum", True),
        ("agi_callerid", True),
        ("DialString", True),
        ("Env", True),
        ("phone_number", True),
        ("caller_number", True),
        ("Uniqueid", False),
        ("Queue", False),
        ("Exten", False),
    ],
)
def test_sensitive_keys(key: str, sensitive: bool) -> None:
    assert is_sensitive_key(key) is sensitive


indian_mobile = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("6789"),
    st.text(alphabet="0123456789", min_size=9, max_size=9),
)


def formats(national: str) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            national,
            "0" + national,
            "+91" + national,
            f"+91 {national[:5]} {national[5:]}",
            f"0{national[:5]}-{national[5:]}",
            f"{national[:5]} {national[5:]}",
            f"{national[:4]} {national[4:7]} {national[7:]}",
            f"+91-{national[:5]}-{national[5:]}",
        ]
    )


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    national=indian_mobile,
    before=st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Nd"]), max_size=20),
    after=st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Nd"]), max_size=20),
)
def test_no_indian_mobile_survives(
    data: st.DataObject, national: str, before: str, after: str
) -> None:
    shown = data.draw(formats(national))
    masked = redact_text(f"{before} {shown} {after}")
    assert national[-8:] not in digits(masked), masked
