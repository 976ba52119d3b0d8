"""The duty roster: shifts in Asia/Kolkata, shifts crossing midnight, who is missing."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from callcenter.agents.errors import RosterInvalid
from callcenter.agents.models import Role
from callcenter.agents.roster import Roster, load_roster, roster_from_mapping

IST = ZoneInfo("Asia/Kolkata")
SAMPLE = Path(__file__).resolve().parent.parent / "config" / "roster.sample.toml"


def ist(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=IST)


ROSTER = """
timezone = "Asia/Kolkata"

[[shift]]
who = "asha"
role = "agent"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "06:00"
end = "14:00"

[[shift]]
who = "rekha"
role = "agent"
days = ["mon"]
start = 22:00:00
end = 06:00:00

[[shift]]
who = "meena"
role = "counsellor"
days = "daily"
start = "14:00"
end = "24:00"

[[shift]]
who = "priya"
role = "agent"
date = 2026-12-31
start = "18:00"
end = "02:00"
"""


@pytest.fixture
def roster(tmp_path: Path) -> Roster:
    path = tmp_path / "roster.toml"
    path.write_text(ROSTER)
    return load_roster(path)


# 2026-11-23 is a Monday.
@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (ist(2026, 11, 23, 5, 59), set()),
        (ist(2026, 11, 23, 6, 0), {"asha"}),  # start is inclusive
        (ist(2026, 11, 23, 14, 0), {"meena"}),  # end is exclusive
        (ist(2026, 11, 23, 23, 59), {"meena", "rekha"}),
        (ist(2026, 11, 24, 0, 0), {"rekha"}),  # meena's "24:00" is midnight
        (ist(2026, 11, 24, 5, 59), {"rekha"}),  # Monday's night shift, on Tuesday morning
        (ist(2026, 11, 24, 6, 0), {"asha"}),
        (ist(2026, 11, 24, 23, 0), {"meena"}),  # no night shift on Tuesday
        (ist(2026, 11, 23, 1, 0), set()),  # Sunday night has no shift starting Sunday
        (ist(2026, 11, 28, 10, 0), set()),  # Saturday: asha is weekdays only
    ],
)
def test_rostered_now(roster: Roster, moment: datetime, expected: set[str]) -> None:
    assert roster.rostered_now(moment) == expected


def test_one_off_shift_crossing_into_the_new_year(roster: Roster) -> None:
    assert "priya" in roster.rostered_now(ist(2027, 1, 1, 1, 59))
    assert "priya" not in roster.rostered_now(ist(2027, 1, 1, 2, 0))
    assert "priya" not in roster.rostered_now(ist(2026, 12, 30, 19, 0))


def test_time_zones_are_instants_not_wall_clocks(roster: Roster) -> None:
    # 00:30 UTC on Tuesday is 06:00 IST: asha starts; rekha's night shift has ended.
    assert roster.rostered_now(datetime(2026, 11, 24, 0, 30, tzinfo=UTC)) == {"asha"}
    # 18:00 UTC Monday = 23:30 IST Monday.
    assert roster.rostered_now(datetime(2026, 11, 23, 18, 0, tzinfo=UTC)) == {"meena", "rekha"}
    # The same instant in another offset gives the same answer.
    new_york = timezone(timedelta(hours=-5))
    assert roster.rostered_now(datetime(2026, 11, 23, 13, 0, tzinfo=new_york)) == {
        "meena", "rekha",
    }
    with pytest.raises(ValueError, match="timezone-aware"):
        roster.rostered_now(datetime(2026, 11, 23, 18, 0))


def test_missing_lists_who_is_rostered_but_not_logged_in(roster: Roster) -> None:
    moment = ist(2026, 11, 23, 23, 0)
    missing = roster.missing(moment, logged_in={"Meena"})
    assert [(m.who, m.role) for m in missing] == [("rekha", Role.AGENT)]
    assert missing[0].start == ist(2026, 11, 23, 22) and missing[0].end == ist(2026, 11, 24, 6)
    assert roster.missing(moment, logged_in={"meena", "rekha", "someone-extra"}) == []
    # Within the grace period after her shift starts she is not "missing" yet.
    early = ist(2026, 11, 23, 22, 10)
    assert roster.missing(early, logged_in={"meena"}, grace=timedelta(minutes=15)) == []
    assert [m.who for m in roster.missing(early, logged_in=set())] == ["meena", "rekha"]


def test_overlapping_shifts_of_one_person_are_listed_once() -> None:
    roster = roster_from_mapping(
        {
            "shift": [
                {"who": "asha", "role": "agent", "days": "daily", "start": "06:00",
                 "end": "14:00"},
                {"who": "asha", "role": "agent", "days": "daily", "start": "12:00",
                 "end": "20:00"},
            ]
        }
    )
    missing = roster.missing(ist(2026, 11, 23, 13), logged_in=())
    assert [(m.who, m.start.time()) for m in missing] == [("asha", time(6))]


def test_the_sample_roster_loads() -> None:
    roster = load_roster(SAMPLE)
    assert roster.timezone == "Asia/Kolkata"
    # Thursday 31 Dec 2026, 23:30: the night shift and the festival cover.
    assert roster.rostered_now(ist(2026, 12, 31, 23, 30)) == {"rekha", "priya"}
    assert {"asha", "meena", "kavita"} <= roster.usernames()


def test_every_problem_is_reported_with_its_place() -> None:
    with pytest.raises(RosterInvalid) as caught:
        roster_from_mapping(
            {
                "timezone": "India/Lucknow",
                "shift": [
                    {"who": "Asha Verma", "role": "agent", "days": ["mon"], "start": "06:00",
                     "end": "14:00"},
                    {"who": "meena", "role": "nurse", "days": ["funday"], "start": "25:00",
                     "end": "14:00"},
                    {"who": "rekha", "role": "agent", "start": "22:00", "end": "22:00",
                     "days": "daily", "date": date(2026, 1, 1)},
                    {"who": "kavita", "role": "supervisor", "days": "daily",
                     "start": "08:00", "end": "16:00", "colour": "red"},
                ],
            },
            "roster.toml",
        )
    problems = "\n".join(caught.value.problems)
    for expected in (
        "timezone: 'India/Lucknow'",
        "shift[0].who",
        "shift[1].role",
        "shift[1].days: 'funday'",
        "shift[1].start: '25:00'",
        "shift[2]: start and end are both 22:00",
        "shift[2]: give either days",
        "shift[3]: unknown keys ['colour']",
    ):
        assert expected in problems
    assert str(caught.value).startswith("roster.toml: invalid roster")


def test_unreadable_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(RosterInvalid, match="cannot read"):
        load_roster(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[shift]\nwho = ")
    with pytest.raises(RosterInvalid, match="not valid TOML"):
        load_roster(broken)
