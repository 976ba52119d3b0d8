"""Supervisors' search and CSV export: filters, roles, audit, and never a number."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from callcenter.cases.audit import AuditLog
from callcenter.cases.identities import IdentityStore
from callcenter.cases.search import EXPORT_COLUMNS, CaseFilter, CaseSearch, SearchNotAllowed
from callcenter.cases.service import CaseService, WrapUpForm
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.pbx.models import CallRecord
from callcenter.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def world(migrated_store: Store) -> tuple[CaseService, CaseSearch, Clock, list[str]]:
    vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
    clock = Clock()
    audit = AuditLog(migrated_store)
    cases = CaseService(migrated_store, vault, audit, clock=clock)
    identities = IdentityStore(migrated_store)
    refs = []
    plan = [
        ("9876543210", "stalking", "Lucknow", ["9999912345"]),
        ("9123456789", "phone-harassment", "Kanpur", ["9999912345"]),
        ("9876543210", "cyber-harassment", "=HYPERLINK(\"x\")", []),
    ]
    for n, (number, category, district, harassers) in enumerate(plan):
        identity = await identities.remember(vault.admit_caller_id(number))
        async with migrated_store.transaction() as session:
            call = CallRecord(node="pbx1", linkedid=f"1.{n}", caller_identity_id=identity)
            session.add(call)
        view = await cases.create_from_wrapup(
            call,
            WrapUpForm(category=category, district=district, harasser_numbers=harassers,
                       description=f"caller gave {number} and harasser {harassers}"),
            "agent.asha",
        )
        refs.append(view.summary.reference)
        clock.now += timedelta(days=10)
    return cases, CaseSearch(migrated_store, audit, clock=clock), clock, refs


async def test_search_filters(world: tuple[CaseService, CaseSearch, Clock, list[str]]) -> None:
    cases, search, _clock, refs = world
    await cases.change_status(refs[1], "in-progress", "sup.meena")

    async def found(**kwargs: object) -> list[str]:
        return [c.reference for c in await search.search(CaseFilter(**kwargs),  # type: ignore[arg-type]
                                                         role="supervisor")]

    assert await found() == refs[::-1]
    assert await found(status="in-progress") == [refs[1]]
    assert await found(category="stalking") == [refs[0]]
    assert await found(district="kanpur") == [refs[1]]
    assert await found(reference=refs[2][:4] + " " + refs[2][4:]) == [refs[2]]
    assert await found(created_from=datetime(2026, 3, 5, tzinfo=UTC),
                       created_to=datetime(2026, 3, 15, tzinfo=UTC)) == [refs[1]]
    first = await cases.get_by_reference(refs[0])
    assert first.summary.caller_token is not None
    assert await found(token=first.summary.caller_token.lower()) == [refs[2], refs[0]]
    harasser = first.harassers[0].token
    assert await found(token=harasser) == [refs[1], refs[0]]
    with pytest.raises(SearchNotAllowed):
        await search.search(CaseFilter(), role="agent")


async def test_csv_export_has_no_number_and_is_audited(
    migrated_store: Store, world: tuple[CaseService, CaseSearch, Clock, list[str]]
) -> None:
    _cases, search, _clock, refs = world
    text = await search.export_csv(CaseFilter(), actor="sup.meena", role="supervisor")
    assert not re.search(r"(?<!\d)\d{10}(?!\d)", text)
    assert "98765" not in text and "99999" not in text and "91234" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [r["reference"] for r in rows] == refs[::-1]
    by_ref = {r["reference"]: r for r in rows}
    assert by_ref[refs[0]]["repeat_harasser"] == "yes"
    assert by_ref[refs[0]]["harasser_tokens"].startswith("H-")
    assert by_ref[refs[2]]["district"].startswith("'=")  # no formula runs in a spreadsheet
    assert by_ref[refs[2]]["calls"] == "1"
    (entry,) = await AuditLog(migrated_store).entries(action="cases.export")
    assert entry.actor == "sup.meena" and entry.details["rows"] == 3
    with pytest.raises(SearchNotAllowed):
        await search.export_csv(CaseFilter(), actor="agent.asha", role="agent")
    assert len(await AuditLog(migrated_store).entries(action="cases.export")) == 1
