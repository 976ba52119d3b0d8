"""Cases: wrap-up, lifecycle, timeline, harassers, blocks, and references under load."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from callcenter.cases.audit import AuditLog
from callcenter.cases.identities import IdentityStore
from callcenter.cases.models import Case, CaseStatus, CaseStatusChange
from callcenter.cases.reference import is_valid_reference, make_reference, parse_reference
from callcenter.cases.service import (
    CaseChanges,
    CaseInvalid,
    CaseNotFound,
    CaseService,
    InvalidTransition,
    WrapUpForm,
)
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.pbx.models import CallRecord
from callcenter.store import Store

CALLER = "+91 98765 43210"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def vault() -> Vault:
    return Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cases(migrated_store: Store, vault: Vault, clock: Clock) -> CaseService:
    return CaseService(migrated_store, vault, AuditLog(migrated_store), clock=clock)


async def new_call(
    store: Store, vault: Vault, number: str | None = CALLER, *, n: int = 1,
    category: str | None = "stalking",
) -> CallRecord:
    identity = await IdentityStore(store).remember(vault.admit_caller_id(number))
    async with store.transaction() as session:
        record = CallRecord(
            node="pbx1", linkedid=f"1795327929.{n}", caller_identity_id=identity,
            category=category, risk="high", language="hi",
            started_at=datetime(2026, 3, 2, 9, 55, tzinfo=UTC),
        )
        session.add(record)
    return record


async def test_case_lifecycle(migrated_store: Store, vault: Vault, cases: CaseService,
                              clock: Clock) -> None:
    call = await new_call(migrated_store, vault)
    view = await cases.create_from_wrapup(
        call, WrapUpForm(description="He follows her from the bus stop", district="Lucknow",
                         actions=["counselling"], note="Asked her to keep a diary"),
        "agent.asha",
    )
    case = view.summary
    assert is_valid_reference(case.reference)
    assert parse_reference(case.reference).year == 2026
    assert (case.status, case.category.value, case.risk.value, case.language) == (
        CaseStatus.OPEN, "stalking", "high", "hi",
    )
    assert case.assigned_to == "agent.asha" and case.caller_token and case.caller_token[0] == "T"
    assert view.call_ids == (call.id,)
    assert [(e.kind, e.what) for e in view.timeline] == [
        ("status", "open"), ("action", "counselling"), ("note", "note"),
    ]

    path = [CaseStatus.IN_PROGRESS, CaseStatus.REFERRED, CaseStatus.RESOLVED, CaseStatus.CLOSED]
    for status in path:
        clock.tick(hours=1)
        await cases.change_status(case.reference, status, "sup.meena")
    with pytest.raises(InvalidTransition):
        await cases.change_status(case.reference, CaseStatus.RESOLVED, "sup.meena")
    clock.tick(hours=1)
    reopened = await cases.change_status(
        format(parse_reference(case.reference)), CaseStatus.IN_PROGRESS, "agent.asha",
        reason="she called again",
    )
    assert reopened.status is CaseStatus.IN_PROGRESS

    final = await cases.get_by_reference(case.reference)
    times = final.status_times
    assert times[CaseStatus.OPEN] == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert times[CaseStatus.CLOSED] == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    assert times[CaseStatus.IN_PROGRESS] == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    statuses = [e.what for e in final.timeline if e.kind == "status"]
    assert statuses == ["open", "in-progress", "referred", "resolved", "closed", "in-progress"]
    async with migrated_store.session() as session:
        changes = (await session.scalars(select(CaseStatusChange))).all()
    assert len(changes) == 6


async def test_wrapup_is_idempotent_per_call(migrated_store: Store, vault: Vault,
                                             cases: CaseService) -> None:
    call = await new_call(migrated_store, vault)
    views = await asyncio.gather(
        *(cases.create_from_wrapup(call.id, WrapUpForm(), "agent.asha") for _ in range(3))
    )
    assert len({v.summary.reference for v in views}) == 1
    async with migrated_store.session() as session:
        assert len((await session.scalars(select(Case))).all()) == 1
    # the next case of the year takes the next number: no gap from the lost races
    other = await new_call(migrated_store, vault, "+91 91234 56789", n=2)
    second = await cases.create_from_wrapup(other, WrapUpForm(), "agent.asha")
    assert parse_reference(second.summary.reference).seq == 2


async def test_category_is_required_when_the_ivr_did_not_know(
    migrated_store: Store, vault: Vault, cases: CaseService
) -> None:
    call = await new_call(migrated_store, vault, category="unclassified")
    with pytest.raises(CaseInvalid) as refused:
        await cases.create_from_wrapup(call, WrapUpForm(), "agent.asha")
    assert refused.value.field == "category"
    view = await cases.create_from_wrapup(call, WrapUpForm(category="cyber-harassment"),
                                          "agent.asha")
    assert view.summary.category.value == "cyber-harassment"


async def test_free_text_never_stores_a_number(migrated_store: Store, vault: Vault,
                                               cases: CaseService) -> None:
    call = await new_call(migrated_store, vault)
    view = await cases.create_from_wrapup(
        call, WrapUpForm(description="Calls from 98765-43210 at night"), "agent.asha"
    )
    ref = view.summary.reference
    await cases.add_note(ref, f"Harasser +91 91234 56789 again, see {ref}", "agent.asha")
    stored = await cases.get_by_reference(ref)
    texts = [stored.description] + [e.text or "" for e in stored.timeline]
    assert not any(re.search(r"\d{5}", t.replace(ref, "")) for t in texts)
    assert ref in texts[-1]  # the reference itself is kept


async def test_actions_move_the_status(migrated_store: Store, vault: Vault,
                                       cases: CaseService) -> None:
    call = await new_call(migrated_store, vault)
    ref = (await cases.create_from_wrapup(call, WrapUpForm(), "agent.asha")).summary.reference
    await cases.add_action(ref, "fir-advised", "agent.asha")
    assert (await cases.get_by_reference(ref)).summary.status is CaseStatus.OPEN
    await cases.add_action(ref, "closed-as-prank", "sup.meena", note="abusive caller")
    view = await cases.get_by_reference(ref)
    assert view.summary.status is CaseStatus.CLOSED
    assert [e.what for e in view.timeline if e.kind == "action"] == [
        "fir-advised", "closed-as-prank",
    ]
    with pytest.raises(CaseInvalid):
        await cases.add_action(ref, "lunch-break", "agent.asha")


async def test_update_link_and_earlier_cases(migrated_store: Store, vault: Vault,
                                             cases: CaseService, clock: Clock) -> None:
    first_call = await new_call(migrated_store, vault, n=1)
    first = await cases.create_from_wrapup(first_call, WrapUpForm(), "agent.asha")
    clock.tick(days=3)
    again = await new_call(migrated_store, vault, "09876543210", n=2)  # same woman
    assert again.caller_identity_id == first_call.caller_identity_id
    linked = await cases.link_call(first.summary.reference, again.id, "agent.ritu")
    assert linked.call_ids == (first_call.id, again.id)
    updated = await cases.update(
        first.summary.reference, CaseChanges(district="Kanpur", risk="critical",
                                             assigned_to="agent.ritu"), "sup.meena",
    )
    assert (updated.summary.district, updated.summary.risk.value,
            updated.summary.assigned_to) == ("Kanpur", "critical", "agent.ritu")
    third = await new_call(migrated_store, vault, n=3)
    second = await cases.create_from_wrapup(third, WrapUpForm(category="phone-harassment"),
                                            "agent.ritu")
    assert first_call.caller_identity_id is not None
    earlier = await cases.earlier_cases(first_call.caller_identity_id)
    assert [c.reference for c in earlier] == [
        second.summary.reference, first.summary.reference,
    ]
    with pytest.raises(CaseNotFound):
        await cases.get_by_reference(make_reference(2026, 9999))


async def test_repeat_harasser_is_flagged(migrated_store: Store, vault: Vault,
                                          cases: CaseService) -> None:
    one = await new_call(migrated_store, vault, n=1)
    two = await new_call(migrated_store, vault, "+91 91234 56789", n=2)
    a = await cases.create_from_wrapup(
        one, WrapUpForm(harasser_numbers=["+91 99999 12345"]), "agent.asha"
    )
    assert [h.repeat for h in a.harassers] == [False]
    b = await cases.create_from_wrapup(
        two, WrapUpForm(harasser_numbers=["099999-12345", "99999 12345"]), "agent.ritu"
    )
    (harasser,) = b.harassers  # two spellings, one man
    assert harasser.token.startswith("H-") and harasser.complaint_count == 2 and harasser.repeat
    assert await cases.harasser_complaint_count(harasser.identity_id) == 2
    with pytest.raises(CaseInvalid) as typo:
        await cases.name_harasser(a.summary.reference, "12345", "agent.asha")
    assert "12345" not in str(typo.value)


async def test_blocking_an_abusive_caller_expires(migrated_store: Store, vault: Vault,
                                                  cases: CaseService, clock: Clock) -> None:
    call = await new_call(migrated_store, vault)
    identity = call.caller_identity_id
    assert identity is not None
    assert not await cases.is_blocked(identity)
    with pytest.raises(CaseInvalid):
        await cases.block_caller(identity, reason="abusive", blocked_by="sup.meena",
                                 period=timedelta(days=7))
    with pytest.raises(CaseInvalid):
        await cases.block_caller(identity, reason="abusive language on 12 calls",
                                 blocked_by="sup.meena", period=timedelta(days=365))
    block = await cases.block_caller(identity, reason="abusive language on 12 calls",
                                     blocked_by="sup.meena", period=timedelta(days=7))
    assert await cases.is_blocked(identity)
    assert not await cases.is_blocked(identity, clock.now + timedelta(days=7, seconds=1))
    await cases.lift_block(block.id, lifted_by="sup.meena")
    assert not await cases.is_blocked(identity)
    entries = await AuditLog(migrated_store).entries(subject=f"identity:{identity}")
    assert [e.action for e in entries] == ["caller.unblock", "caller.block"]


async def test_concurrent_creates_get_distinct_sequential_references(
    migrated_store: Store, vault: Vault, cases: CaseService
) -> None:
    calls = [await new_call(migrated_store, vault, n=n) for n in range(1, 13)]
    views = await asyncio.gather(
        *(cases.create_from_wrapup(c, WrapUpForm(), f"agent{i}") for i, c in enumerate(calls))
    )
    seqs = sorted(parse_reference(v.summary.reference).seq for v in views)
    assert seqs == list(range(1, 13))


async def test_reference_year_is_the_year_in_india(migrated_store: Store, vault: Vault,
                                                   cases: CaseService, clock: Clock) -> None:
    clock.now = datetime(2026, 12, 31, 19, 0, tzinfo=UTC)  # 00:30 on 1 January in India
    call = await new_call(migrated_store, vault)
    view = await cases.create_from_wrapup(call, WrapUpForm(), "agent.asha")
    assert parse_reference(view.summary.reference).year == 2027
