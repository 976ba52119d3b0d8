"""The unit of the AMI stream: one banner, response, event or action."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

FrameKind = Literal["banner", "response", "event", "action"]


class Frame(dict[str, str]):
    """One AMI message: a dict of header name (as sent) to its *first* value.

    A dict subclass so the parser builds it in one C call and exact-case lookups
    (``frame["Channel"]``) cost nothing extra; ``__missing__`` makes lookup
    case-insensitive, because Asterisk is not consistent (``CommandID`` in the
    AGI action, ``CommandId`` in AsyncAGIExec). Repeated headers
    (``ChanVariable:``, ``Variable:``, ``Output:``) keep every value for
    :meth:`get_all`.
    """

    __slots__ = ("kind", "name", "action_id", "_repeated", "_lower")

    kind: FrameKind
    #: The event name, the response status (``Success``, ``Error``...), the
    #: action name, or the banner text.
    name: str
    action_id: str | None

    @classmethod
    def make(
        cls,
        kind: FrameKind,
        name: str,
        headers: dict[str, str] | Iterable[tuple[str, str]] = (),
        repeated: dict[str, list[str]] | None = None,
        action_id: str | None = None,
    ) -> Frame:
        frame = cls(headers)
        frame.kind = kind
        frame.name = name
        frame.action_id = dict.get(frame, "ActionID") if action_id is None else action_id
        if repeated:
            frame._repeated = repeated
        return frame

    #: Exact-case lookup without the case-insensitive fallback (hot paths).
    dict_get = dict.get

    @property
    def headers(self) -> dict[str, str]:
        return self

    def _lower_index(self) -> dict[str, str]:
        try:
            return self._lower
        except AttributeError:
            index: dict[str, str] = {}
            for key, value in dict.items(self):
                index.setdefault(key.lower(), value)
            self._lower = index
            return index

    def __missing__(self, name: str) -> str:
        return self._lower_index()[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        value = dict.get(self, name)
        if value is not None:
            return value
        return self._lower_index().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return dict.__contains__(self, name) or name.lower() in self._lower_index()

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, in the order received ([] when absent)."""
        repeated = getattr(self, "_repeated", None)
        if repeated is not None:
            lowered = name.lower()
            for key, values in repeated.items():
                if key.lower() == lowered:
                    return list(values)
        value = self.get(name)
        return [] if value is None else [value]

    def pairs(self) -> Iterator[tuple[str, str]]:
        """Every (name, value) pair, repeated headers included."""
        repeated = getattr(self, "_repeated", None)
        for key, value in dict.items(self):
            values = repeated.get(key) if repeated is not None else None
            if values is None:
                yield key, value
            else:
                for each in values:
                    yield key, each

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.kind == other.kind
            and self.name == other.name
            and list(self.pairs()) == list(other.pairs())
        )

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Frame({self.kind!r}, {self.name!r}, action_id={self.action_id!r})"
