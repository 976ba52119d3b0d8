"""manager.conf ``eventfilter`` and the session's Events on/off, as manager.c applies them.

Legacy filter syntax: a regular expression searched in the whole event text;
a leading ``!`` makes it an exclude filter. If any include filter exists only
events matching one pass (so OriginateResponse or AsyncAGIExec vanish too
unless a filter lets them through); exclude filters then remove events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class EventFilter:
    includes: list[re.Pattern[str]] = field(default_factory=list)
    excludes: list[re.Pattern[str]] = field(default_factory=list)

    @classmethod
    def from_lines(cls, lines: list[str]) -> EventFilter:
        flt = cls()
        for line in lines:
            text = line.strip()
            if not text:
                continue
            if text.startswith("!"):
                flt.excludes.append(re.compile(text[1:]))
            else:
                flt.includes.append(re.compile(text))
        return flt

    @property
    def empty(self) -> bool:
        return not self.includes and not self.excludes

    def passes(self, event_text: str) -> bool:
        if self.includes and not any(rx.search(event_text) for rx in self.includes):
            return False
        return not any(rx.search(event_text) for rx in self.excludes)


def event_mask(value: str) -> bool | None:
    """Login ``Events:`` / ``Action: Events`` ``EventMask``: on, off, or a class list.

    Returns True (all events), False (none), or None when it is a class list
    (treated as on: the simulator does not split event classes further).
    """
    v = value.strip().lower()
    if v in ("on", "yes", "true", "1", "all"):
        return True
    if v in ("off", "no", "false", "0", ""):
        return False
    return None
