"""Logging: structlog and stdlib through one pipeline, with caller numbers redacted.

A woman who calls the helpline must not find her number in a log file. Everything that is
logged, through structlog or the stdlib ``logging`` module (the AMI client, aiohttp,
SQLAlchemy), passes :func:`redact_value` before it is rendered:

* values under sensitive keys (``CallerIDNum``, ``ConnectedLineNum``, ``agi_callerid``,
  ``DialString``, AsyncAGI ``Env``, anything with ``phone``/``number``/``msisdn`` in its
  name...) are replaced whole;
* in every other string, phone-number-like text is masked:
  - whatever ``phonenumbers.PhoneNumberMatcher`` (region IN, lenient ``POSSIBLE``) finds
    with at least 7 digits: ``+91 98765 43210``, ``098765-43210``, ``(0522) 2345678``;
  - every run of 7 or more consecutive digits, even glued to letters
    (``PJSIP/9876543210-0000002a``, ``caller9876543210``).

  Not masked, because they carry no number and are needed to follow a call: AMI ids and
  event timestamps (``1795329071.123``: ten digits starting with 1, a dot, 1-6 digits; no
  Indian number has that form), the 8-hex-digit suffix of channel names
  (``PJSIP/agent1-00000003``), IPv4 addresses and ISO-8601 dates/times. Everything else
  errs on the side of masking: a 7-digit byte count is masked too.

Masking is never partial (no "last four digits"): the token from ``cases.vault`` is how a
log line refers to a caller.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import phonenumbers
import structlog
from phonenumbers import Leniency

REDACTED = "[redacted]"
REDACTED_NUMBER = "[number]"

# Lower-cased, with "_" and "-" removed, these keys hold a number (or more) by nature.
_SENSITIVE_EXACT = frozenset(
    {
        "env",  # AsyncAGI Env: agi_callerid, agi_dnid... URL-encoded
        "ani",
        "cli",
        "dnid",
        "rdnis",
        "agirdnis",
        "agidnid",
        "dialstring",
        "destination",
        "msisdn",
        "to",
        "from",
    }
)
_SENSITIVE_PARTS = ("callerid", "connectedline", "phone", "msisdn", "mobile", "dialstring")
_SENSITIVE_SUFFIXES = ("num", "number", "numbers")

_MIN_DIGITS = 7
_DIGIT_RUN = re.compile(rf"\d{{{_MIN_DIGITS},}}")
# Digits in groups (+91 60000 00000, 98-765-43210, (0522) 2612345): at least 7 digits
# with at most two separator characters between neighbours. phonenumbers misses some
# spellings (a stray "+" before "+91"), so this catches what looks like one anyway.
_GROUPED_DIGITS = re.compile(rf"\d(?:[ \-./()]{{0,2}}\d){{{_MIN_DIGITS - 1},}}")
_EXEMPT = re.compile(
    r"(?<![\d.])1\d{9}\.\d{1,6}(?!\d)"  # AMI Uniqueid / Linkedid / Timestamp
    r"|(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"  # IPv4
    r"|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?"  # ISO-8601
)

# The 8-hex-digit sequence Asterisk appends to a channel name (PJSIP/agent1-0000001f,
# Local/s@lab-callback-00000005;1): often all digits, never part of a number.
_CHANNEL_SUFFIX = re.compile(r"[A-Za-z]+/[^\s,/]+?-([0-9a-f]{8})(?=;[12]\b|[^0-9A-Za-z]|$)")

_MARKER = "_callcenter_redaction"


def is_sensitive_key(key: object) -> bool:
    name = str(key).lower().replace("_", "").replace("-", "")
    return (
        name in _SENSITIVE_EXACT
        or any(part in name for part in _SENSITIVE_PARTS)
        or name.endswith(_SENSITIVE_SUFFIXES)
    )


def redact_text(text: str) -> str:
    """``text`` with every phone-number-like part replaced by ``[number]``."""
    if sum(ch.isdigit() for ch in text) < _MIN_DIGITS:
        return text  # the common case, and PhoneNumberMatcher is not cheap
    # Blank the exempt parts out (same length, so positions still map onto ``text``) and
    # look for numbers in what is left.
    exempt = [m.span() for m in _EXEMPT.finditer(text)]
    exempt += [m.span(1) for m in _CHANNEL_SUFFIX.finditer(text)]
    scan = text
    for start, end in exempt:
        scan = scan[:start] + "_" * (end - start) + scan[end:]

    spans: list[tuple[int, int]] = []
    for match in phonenumbers.PhoneNumberMatcher(scan, "IN", leniency=Leniency.POSSIBLE):
        if sum(ch.isdigit() for ch in match.raw_string) >= _MIN_DIGITS:
            spans.append((match.start, match.end))
    spans.extend(m.span() for m in _DIGIT_RUN.finditer(scan))
    spans.extend(m.span() for m in _GROUPED_DIGITS.finditer(scan))
    if not spans:
        return text
    pieces: list[str] = []
    cursor = 0
    for start, end in _merge(spans):
        pieces.append(text[cursor:start])
        pieces.append(REDACTED_NUMBER)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def redact_value(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` safe to log; containers are walked (keys checked too)."""
    if _depth > 8:
        return REDACTED  # deeper than anything we log on purpose
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        text = str(value)
        redacted = redact_text(text)
        return value if redacted == text else redacted
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "backslashreplace"))
    if isinstance(value, Mapping):
        return {
            redact_text(str(k)): REDACTED if is_sensitive_key(k) else redact_value(v, _depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, _depth + 1) for item in value]
    # Anything else is rendered through its str() later; redact that text now.
    return redact_text(str(value))


def redact_event(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: redact the message and every key/value."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):
            continue  # structlog's own (_record, _from_structlog)
        event_dict[key] = REDACTED if is_sensitive_key(key) else redact_value(value)
    return event_dict


class RedactingFilter(logging.Filter):
    """For stdlib handlers: the formatted message and ``extra=`` fields, redacted in place."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message",
        "asctime",
    }

    def filter(self, record: logging.LogRecord) -> bool:
        # A dict message comes from structlog, whose chain has redacted it already; turning
        # it into a string here would break ProcessorFormatter.
        if isinstance(record.msg, dict):
            return True
        if not getattr(record, _MARKER, False):
            record.msg = redact_text(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact_text(record.exc_text)
            for key, value in list(vars(record).items()):
                if key in self._STANDARD or key.startswith("_"):
                    continue
                setattr(record, key, REDACTED if is_sensitive_key(key) else redact_value(value))
            setattr(record, _MARKER, True)
        return True


def configure_logging(
    level: str | int = "INFO", json: bool = False, *, stream: TextIO | None = None
) -> logging.Handler:
    """Route structlog and stdlib logging through one redacting handler on the root logger.

    Calling it again replaces the handler it installed before (and only that one).
    Returns the handler, e.g. for tests.
    """
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
        redact_event,
        # After redaction: the timestamp is ours and has no number in it.
        timestamper,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=_plain_exception)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_private,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    setattr(handler, _MARKER, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARKER, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handler


def _drop_private(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event_dict.items() if not k.startswith("_")}


def _plain_exception(sio: TextIO, exc_info: Any) -> None:
    # format_exc_info already turned exc_info into redacted text; this is only a fallback.
    sio.write("\n" + redact_text(logging.Formatter().formatException(exc_info)))
