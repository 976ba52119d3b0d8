"""Encoding of AMI actions (and of replies/events, for the simulator).

A header value holding CR or LF would end the header early and let the rest of
the value be read as new headers, or a new action (header injection). A
caller's name, a DTMF string or a note typed by an agent may end up in an action,
so the encoder refuses such values instead of passing them on.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

from .errors import AMIEncodeError

HeaderValue = str | int | float | bool | None | Iterable[str | int]
Headers = Mapping[str, HeaderValue] | Iterable[tuple[str, str | int]]

_action_ids = itertools.count(1)


def new_action_id(prefix: str = "cc") -> str:
    return f"{prefix}-{next(_action_ids)}"


def _check(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise AMIEncodeError(f"header {name!r}: value contains CR or LF")
    if not name or ":" in name or "\r" in name or "\n" in name or name != name.strip():
        raise AMIEncodeError(f"invalid header name {name!r}")


def _pairs(headers: Headers) -> Iterable[tuple[str, str]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if value is None:
            continue
        if isinstance(value, bool):
            yield name, "true" if value else "false"
        elif isinstance(value, str | int | float):
            yield name, str(value)
        else:  # a repeated header, e.g. Variable: a=1 / Variable: b=2
            for each in value:
                yield name, str(each)


def encode_frame(first: tuple[str, str], headers: Headers = ()) -> bytes:
    """Encode one message whose first header is ``first`` (e.g. ("Event", "Hangup"))."""
    lines: list[str] = []
    for name, value in itertools.chain((first,), _pairs(headers)):
        _check(name, value)
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


def encode_action(
    action: str, headers: Headers = (), *, action_id: str | None = None
) -> tuple[bytes, str]:
    """Encode ``Action: <action>`` with its headers; returns (bytes, ActionID).

    An ``ActionID`` given in ``headers`` wins over ``action_id``; when neither
    is given one is generated, so every reply can be matched to its action.
    """
    pairs = list(_pairs(headers))
    given = next((v for k, v in pairs if k.lower() == "actionid"), None)
    if given is None:
        given = action_id or new_action_id()
        pairs.insert(0, ("ActionID", given))
    return encode_frame(("Action", action), pairs), given
