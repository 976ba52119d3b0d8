"""The duty roster: who should be at her desk when.

Shifts come from a TOML file (see config/roster.sample.toml) or, later, from an API that
builds :class:`Shift` values itself. Times are local wall-clock times in the roster's time
zone (Asia/Kolkata for the 1090 line). A shift whose end is not after its start crosses
midnight and belongs to the day it starts: a Monday 22:00-06:00 night shift runs from
Monday 22:00 to Tuesday 06:00.

The roster answers two questions for the supervisors' wallboard: who is rostered now, and
who is rostered but not logged in.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidAccountData, RosterInvalid
from .models import Role, normalise_role, normalise_username

DEFAULT_TIMEZONE = "Asia/Kolkata"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# "24:00" is how a roster says "until midnight at the end of the day".
END_OF_DAY = "24:00"


@dataclass(frozen=True, slots=True)
class Shift:
    who: str  # username
    role: Role
    start: time
    #: None: midnight at the end of the start day ("24:00").
    end: time | None
    #: Weekdays it repeats on (0 = Monday), or the dates it is on; exactly one is set.
    weekdays: frozenset[int] = frozenset()
    dates: frozenset[date] = frozenset()

    @property
    def crosses_midnight(self) -> bool:
        return self.end is not None and self.end <= self.start

    def on(self, day: date) -> bool:
        """Whether a shift of this pattern starts on ``day``."""
        return day in self.dates if self.dates else day.weekday() in self.weekdays

    def occurrence(self, day: date, zone: ZoneInfo) -> ShiftOccurrence:
        """The shift starting on ``day``, as aware datetimes in ``zone``."""
        start = datetime.combine(day, self.start, zone)
        if self.end is None:
            end = datetime.combine(day + timedelta(days=1), time(0), zone)
        elif self.crosses_midnight:
            end = datetime.combine(day + timedelta(days=1), self.end, zone)
        else:
            end = datetime.combine(day, self.end, zone)
        return ShiftOccurrence(self.who, self.role, start, end)


@dataclass(frozen=True, slots=True, order=True)
class ShiftOccurrence:
    """One shift on one day; ``start`` <= now < ``end`` means she is on duty."""

    who: str
    role: Role
    start: datetime
    end: datetime

    def covers(self, moment: datetime) -> bool:
        # Compared as instants, so a DST-shifted zone (should one ever be configured)
        # still gives the right answer.
        return self.start <= moment < self.end


class Roster:
    def __init__(self, shifts: Iterable[Shift], timezone: str = DEFAULT_TIMEZONE) -> None:
        self.shifts: tuple[Shift, ...] = tuple(shifts)
        self.timezone = timezone
        self.zone = ZoneInfo(timezone)

    def on_duty(self, now: datetime) -> list[ShiftOccurrence]:
        """Every shift occurrence covering ``now`` (an aware datetime), earliest first."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware (the roster is in local time)")
        today = now.astimezone(self.zone).date()
        found: list[ShiftOccurrence] = []
        # A shift that started yesterday may still run (crossing midnight).
        for day in (today - timedelta(days=1), today):
            for shift in self.shifts:
                if shift.on(day):
                    occurrence = shift.occurrence(day, self.zone)
                    if occurrence.covers(now):
                        found.append(occurrence)
        return sorted(found, key=lambda o: (o.start, o.who))

    def rostered_now(self, now: datetime) -> set[str]:
        return {occurrence.who for occurrence in self.on_duty(now)}

    def missing(
        self, now: datetime, logged_in: Iterable[str], *, grace: timedelta = timedelta(0)
    ) -> list[ShiftOccurrence]:
        """Rostered now but not logged in, one entry per person (her earliest shift), by
        username. ``grace``: someone whose shift started less than this long ago is not
        missing yet."""
        present = {name.lower() for name in logged_in}
        first: dict[str, ShiftOccurrence] = {}
        for occurrence in self.on_duty(now):
            if occurrence.who in present or now - occurrence.start < grace:
                continue
            first.setdefault(occurrence.who, occurrence)
        return [first[who] for who in sorted(first)]

    def usernames(self) -> set[str]:
        return {shift.who for shift in self.shifts}


# -- loading -------------------------------------------------------------------------


def load_roster(path: str | Path) -> Roster:
    """Read and validate a roster file; raises :class:`RosterInvalid` with every problem."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RosterInvalid(source, [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RosterInvalid(source, [f"not valid TOML: {exc}"]) from None
    return roster_from_mapping(data, source)


def roster_from_mapping(data: Mapping[str, Any], source: str = "roster") -> Roster:
    problems: list[str] = []
    unknown = set(data) - {"timezone", "shift"}
    if unknown:
        problems.append(f"unknown top-level keys {sorted(unknown)} (expected timezone, shift)")
    timezone = data.get("timezone", DEFAULT_TIMEZONE)
    try:
        if not isinstance(timezone, str):
            raise ZoneInfoNotFoundError
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"timezone: {timezone!r} is not an IANA time zone (e.g. Asia/Kolkata)")
        timezone = DEFAULT_TIMEZONE
    entries = data.get("shift", [])
    if not isinstance(entries, list):
        problems.append("shift: must be an array of tables ([[shift]])")
        entries = []
    shifts: list[Shift] = []
    for index, entry in enumerate(entries):
        where = f"shift[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table")
            continue
        shift = _shift(entry, where, problems)
        if shift is not None:
            shifts.append(shift)
    if problems:
        raise RosterInvalid(source, problems)
    return Roster(shifts, timezone)


_SHIFT_KEYS = {"who", "role", "days", "dates", "date", "start", "end"}


def _shift(entry: Mapping[str, Any], where: str, problems: list[str]) -> Shift | None:
    before = len(problems)
    unknown = set(entry) - _SHIFT_KEYS
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    who = ""
    try:
        who = normalise_username(str(entry.get("who", "")))
    except InvalidAccountData as exc:
        problems.append(f"{where}.who: {exc}")
    role = Role.AGENT
    try:
        role = normalise_role(str(entry.get("role", "")))
    except InvalidAccountData as exc:
        problems.append(f"{where}.role: {exc}")
    start = _time(entry.get("start"), f"{where}.start", problems, allow_end_of_day=False)
    end = _time(entry.get("end"), f"{where}.end", problems, allow_end_of_day=True)
    if start is not None and end is not None and end == start:
        problems.append(
            f"{where}: start and end are both {start:%H:%M}; for a 24-hour shift write "
            f'start = "00:00", end = "{END_OF_DAY}"'
        )
    weekdays: frozenset[int] = frozenset()
    dates: frozenset[date] = frozenset()
    has_days = "days" in entry
    has_dates = "dates" in entry or "date" in entry
    if has_days == has_dates:
        problems.append(f"{where}: give either days (weekly) or date/dates (one-off), not both")
    elif has_days:
        weekdays = _weekdays(entry["days"], f"{where}.days", problems)
    else:
        dates = _dates(entry, where, problems)
    if len(problems) > before or not isinstance(start, time):
        return None
    end_time = end if isinstance(end, time) else None  # END_OF_DAY
    return Shift(who, role, start, end_time, weekdays=weekdays, dates=dates)


def _time(
    value: Any, where: str, problems: list[str], *, allow_end_of_day: bool
) -> time | str | None:
    if isinstance(value, time):
        if value.tzinfo is not None:
            problems.append(f"{where}: give a local time without offset")
            return None
        return value
    if isinstance(value, str):
        text = value.strip()
        if allow_end_of_day and text == END_OF_DAY:
            return END_OF_DAY
        try:
            parsed = time.fromisoformat(text)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                return parsed
    problems.append(f"{where}: {value!r} is not a local time like \"22:00\"")
    return None


def _weekdays(value: Any, where: str, problems: list[str]) -> frozenset[int]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        problems.append(f"{where}: must be a non-empty list like [\"mon\", \"tue\"] or \"daily\"")
        return frozenset()
    days: set[int] = set()
    for item in items:
        name = str(item).strip().lower()[:3]
        if name == "dai":
            days.update(range(7))
        elif name in WEEKDAYS:
            days.add(WEEKDAYS.index(name))
        else:
            problems.append(f"{where}: {item!r} is not a weekday (mon..sun or daily)")
    return frozenset(days)


def _dates(entry: Mapping[str, Any], where: str, problems: list[str]) -> frozenset[date]:
    values: list[Any] = []
    if "date" in entry:
        values.append(entry["date"])
    raw = entry.get("dates", [])
    values.extend(raw if isinstance(raw, list) else [raw])
    found: set[date] = set()
    for value in values:
        if isinstance(value, date) and not isinstance(value, datetime):
            found.add(value)
            continue
        if isinstance(value, str):
            try:
                found.add(date.fromisoformat(value.strip()))
                continue
            except ValueError:
                pass
        problems.append(f"{where}: {value!r} is not a date like 2026-11-25")
    if not found and not any(p.startswith(where) for p in problems):
        problems.append(f"{where}: dates must not be empty")
    return frozenset(found)
