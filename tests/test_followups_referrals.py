"""Referrals with deadlines and graded action against harassers (issue 7, items 4 and 5).

Real cases service, real scheduler, on a migrated SQLite file and a real PostgreSQL
(``migrated_store``). Time is an injected clock: nothing here waits for a deadline.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from callcenter.bus import BusEvent, InProcessBus
from callcenter.cases.audit import AuditLog
from callcenter.cases.identities import IdentityStore
from callcenter.cases.models import CaseNote
from callcenter.cases.service import CaseService, WrapUpForm
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.config import PROJECT_ROOT
from callcenter.followups import ScheduledTask, Scheduler
from callcenter.followups.harasser import HarasserActionService
from callcenter.followups.referral_models import Referral, ReferralStatus
from callcenter.followups.referrals import (
    REFERRAL_DEADLINE,
    ReferralConflict,
    ReferralDirectory,
    ReferralDirectoryInvalid,
    ReferralEscalated,
    ReferralInvalid,
    ReferralService,
    deadline_key,
    directory_from_mapping,
    load_directory,
)
from callcenter.pbx.models import CallRecord
from callcenter.store import Base, Store
from tests.support.web import cheap_accounts

T0 = datetime(2026, 12, 1, 4, 30, tzinfo=UTC)
DIRECTORY_FILE = PROJECT_ROOT / "config" / "referrals.toml"
CALLER = "+91 98765 43210"
HARASSER = "+91 99999 12345"
OTHER_HARASSER = "+91 97531 86420"
NUMBERS = (CALLER, HARASSER, OTHER_HARASSER)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def leaked(text: str) -> list[str]:
    digits = re.sub(r"\D", "", text)
    return [n for n in NUMBERS if re.sub(r"\D", "", n)[-10:] in digits]


@dataclass
class World:
    store: Store
    clock: FakeClock
    cases: CaseService
    referrals: ReferralService
    harassers: HarasserActionService
    scheduler: Scheduler
    bus: InProcessBus
    escalations: list[ReferralEscalated]
    vault: Vault

    async def open_case(self, n: int, *, district: str = "Lucknow",
                        harasser: str | None = HARASSER) -> str:
        identity = await IdentityStore(self.store).remember(self.vault.admit_caller_id(CALLER))
        async with self.store.transaction() as session:
            record = CallRecord(
                node="up-east", linkedid=f"1795327929.{n}", caller_identity_id=identity,
                caller_token=self.vault.token_for(CALLER).code, category="stalking",
                risk="high", language="hi", started_at=self.clock.now,
                agent_interface="PJSIP/agent1001", outcome="answered",
            )
            session.add(record)
        view = await self.cases.create_from_wrapup(
            record,
            WrapUpForm(description="He calls her at night", district=district,
                       harasser_numbers=[harasser] if harasser else []),
            "asha",
        )
        return view.summary.reference

    async def harasser_token(self, reference: str) -> str:
        view = await self.cases.get_by_reference(reference)
        return view.harassers[0].token


def directory() -> ReferralDirectory:
    return load_directory(DIRECTORY_FILE)


@pytest.fixture
async def world(migrated_store: Store) -> AsyncIterator[World]:
    clock = FakeClock()
    vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
    cases = CaseService(migrated_store, vault, AuditLog(migrated_store), clock=clock)
    accounts = cheap_accounts(migrated_store)
    for username, role in (("asha", "agent"), ("deepa", "supervisor"), ("esha", "admin")):
        await accounts.add(username, display_name=username.title(), role=role,
                           endpoint=f"PJSIP/{username}", password="correct horse battery",
                           skills=["hi"])
    escalations: list[ReferralEscalated] = []
    async with InProcessBus() as bus:
        async def heard(event: BusEvent) -> None:
            assert isinstance(event, ReferralEscalated)
            escalations.append(event)

        bus.subscribe(ReferralEscalated, heard)
        referrals = ReferralService(migrated_store, directory(), cases, bus=bus, clock=clock)
        scheduler = Scheduler(migrated_store, "app-1", referrals.handlers(), clock)
        referrals.bind_tasks(scheduler)
        harassers = HarasserActionService(migrated_store, referrals, clock=clock)
        yield World(migrated_store, clock, cases, referrals, harassers, scheduler, bus,
                    escalations, vault)


async def notes(store: Store, case_id: int) -> list[str]:
    async with store.session() as session:
        return list(await session.scalars(
            select(CaseNote.text).where(CaseNote.case_id == case_id).order_by(CaseNote.id)
        ))


async def tasks_of(store: Store) -> list[ScheduledTask]:
    async with store.session() as session:
        return list(await session.scalars(select(ScheduledTask).order_by(ScheduledTask.id)))


# -- schema and directory -------------------------------------------------------------------


async def test_migration_matches_the_models(migrated_store: Store) -> None:
    def diff(connection: Connection) -> list[object]:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with migrated_store.engine.connect() as connection:
        changes = await connection.run_sync(diff)
    ours = [c for c in changes if "referral" in repr(c) or "harasser_action" in repr(c)]
    assert ours == []


def test_the_shipped_directory_has_every_department_with_an_sla() -> None:
    loaded = directory()
    assert {"police-whd", "dial-112", "prosecution", "health", "education", "wcd",
            "one-stop-centre"} <= set(loaded.departments)
    assert loaded.unit("up-112").sla == timedelta(hours=1)
    # A unit's own SLA wins over its department's.
    assert loaded.unit("health-lucknow-cmo").sla == timedelta(hours=24)
    assert loaded.unit("osc-lucknow").sla == timedelta(hours=24)
    assert loaded.police_desk_for("lucknow") is None  # two stations: she must choose
    desk = loaded.police_desk_for("Kanpur Nagar")
    assert desk is not None and desk.code == "ps-kanpur-kalyanpur-whd"
    assert not leaked(DIRECTORY_FILE.read_text())


GOMTI, HAZRATGANJ, KANPUR = (
    "units[0] (ps-lucknow-gomti-nagar-whd)",
    "units[1] (ps-lucknow-hazratganj-whd)",
    "units[2] (ps-kanpur-kalyanpur-whd)",
)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["units"][2].update(sla_hours=-4), f"{KANPUR}.sla_hours"),
        (lambda d: d["units"][0].update(phone="x"), f"{GOMTI}.phone: unknown key"),
        (lambda d: d["units"][1].update(department="fire"),
         f"{HAZRATGANJ}.department: no department 'fire'"),
        (lambda d: d["units"][1].update(code=d["units"][0]["code"]),
         "units[1] (ps-lucknow-gomti-nagar-whd).code: used by another unit"),
        (lambda d: d["departments"]["health"].pop("sla_hours"), "departments.health.sla_hours"),
        (lambda d: d["settings"].update(max_escalation_level=0), "settings.max_escalation_level"),
    ],
)
def test_a_bad_directory_is_refused_naming_the_key(
    change: Callable[[dict[str, Any]], object], named: str
) -> None:
    import tomllib

    data = tomllib.loads(DIRECTORY_FILE.read_text())
    change(data)
    with pytest.raises(ReferralDirectoryInvalid) as error:
        directory_from_mapping(data, "referrals.toml")
    assert named in str(error.value)


def test_an_unreadable_directory_file_says_so(tmp_path: Path) -> None:
    broken = tmp_path / "referrals.toml"
    broken.write_text("[settings\n")
    with pytest.raises(ReferralDirectoryInvalid, match="not valid TOML"):
        load_directory(broken)
    with pytest.raises(ReferralDirectoryInvalid, match="cannot read"):
        load_directory(tmp_path / "missing.toml")


# -- referring ----------------------------------------------------------------------------------


async def test_a_referral_gets_its_deadline_a_timeline_line_and_a_deadline_task(
    world: World,
) -> None:
    reference = await world.open_case(1)
    referral = await world.referrals.refer(reference, "osc-lucknow",
                                           "Needs shelter tonight", "deepa")
    assert referral.status is ReferralStatus.OPEN
    assert referral.deadline_at == T0 + timedelta(hours=24)
    assert not referral.overdue
    case = await world.cases.get_by_reference(reference)
    assert case.summary.status.value == "referred"
    referred = [e for e in case.timeline if e.kind == "action" and e.what == "referred"]
    assert len(referred) == 1 and "One Stop Centre, Lucknow" in (referred[0].text or "")
    [task] = await tasks_of(world.store)
    assert task.kind == REFERRAL_DEADLINE
    assert task.dedupe_key == deadline_key(referral.id, 0)
    assert task.payload == {"referral_id": referral.id, "level": 0}
    assert task.case_id == case.summary.id
    assert (task.due_at if task.due_at.tzinfo else task.due_at.replace(tzinfo=UTC)) == (
        referral.deadline_at
    )


async def test_refusals_name_the_field(world: World) -> None:
    reference = await world.open_case(1)
    with pytest.raises(ReferralInvalid) as error:
        await world.referrals.refer(reference, "no-such-unit", "x", "deepa")
    assert error.value.field == "unit"
    with pytest.raises(ReferralInvalid) as error:
        await world.referrals.refer(reference, "osc-lucknow", "   ", "deepa")
    assert error.value.field == "reason"
    await world.referrals.refer(reference, "osc-lucknow", "Shelter", "deepa")
    with pytest.raises(ReferralConflict):
        await world.referrals.refer(reference, "osc-lucknow", "Shelter again", "deepa")


async def test_a_number_typed_into_a_reason_is_scrubbed(world: World) -> None:
    reference = await world.open_case(1)
    referral = await world.referrals.refer(
        reference, "osc-lucknow", f"He calls from {OTHER_HARASSER}", "deepa")
    assert not leaked(repr(referral))
    case = await world.cases.get_by_reference(reference)
    assert not leaked(repr(case.timeline))


async def test_an_acknowledged_referral_is_not_escalated(world: World) -> None:
    reference = await world.open_case(1)
    referral = await world.referrals.refer(reference, "up-112", "She is in danger", "deepa")
    acknowledged = await world.referrals.acknowledge(referral.id, "HC Meena, 112 desk", "asha")
    assert acknowledged.status is ReferralStatus.ACKNOWLEDGED
    assert acknowledged.acknowledged_at == T0
    assert acknowledged.acknowledgement_recorded_by == "asha"
    working = await world.referrals.start_work(referral.id, "asha")
    assert (working.status, working.next_deadline_at) == (ReferralStatus.IN_PROGRESS, None)
    world.clock.advance(timedelta(hours=2))
    assert await world.scheduler.run_due() == 1
    [task] = await tasks_of(world.store)
    assert (task.state, task.outcome) == ("done", "no-change")
    assert (await world.referrals.get(referral.id)).escalation_level == 0
    assert await world.referrals.overdue() == []
    assert world.escalations == []


# -- the acceptance: escalated exactly once, shown as overdue ----------------------------------


async def test_a_referral_past_its_deadline_is_escalated_exactly_once_by_two_instances(
    world: World,
) -> None:
    reference = await world.open_case(1)
    referral = await world.referrals.refer(reference, "up-112", "She is in danger", "deepa")
    url = world.store.engine.url.render_as_string(hide_password=False)
    # A second instance of the backend: its own engine, scheduler and referral service.
    other_store = Store.from_url(url)
    try:
        other = ReferralService(other_store, directory(), world.cases, bus=world.bus,
                                clock=world.clock)
        other_scheduler = Scheduler(other_store, "app-2", other.handlers(), world.clock)
        other.bind_tasks(other_scheduler)
        world.clock.advance(timedelta(minutes=59))
        assert await world.scheduler.run_due() == 0, "not before the deadline"
        world.clock.advance(timedelta(minutes=2))
        ran = await asyncio.gather(world.scheduler.run_due(), other_scheduler.run_due(),
                                   # and the same task's handler run twice more, as a
                                   # rerun after a crash would
                                   world.referrals._escalate(referral.id, 0, "system"),
                                   other._escalate(referral.id, 0, "system"))
        await world.bus.drain()
    finally:
        await other_store.close()
    assert ran[0] + ran[1] == 1, "one claim of the deadline task"
    escalated = await world.referrals.get(referral.id)
    assert escalated.status is ReferralStatus.ESCALATED
    assert escalated.escalation_level == 1
    assert escalated.escalated_at == world.clock.now
    assert escalated.next_deadline_at == world.clock.now + timedelta(hours=12)
    assert escalated.overdue
    lines = [t for t in await notes(world.store, escalated.case_id) if "escalated" in t]
    assert len(lines) == 1
    assert [(e.referral_id, e.escalation_level) for e in world.escalations] == [
        (referral.id, 1)
    ]
    tasks = await tasks_of(world.store)
    assert [(t.dedupe_key, t.state) for t in tasks] == [
        (deadline_key(referral.id, 0), "done"),
        (deadline_key(referral.id, 1), "pending"),
    ]
    overdue = await world.referrals.overdue()
    assert [r.id for r in overdue] == [referral.id]
    [shown] = world.referrals.overdue_snapshot()
    assert shown["id"] == referral.id and shown["escalation_level"] == 1
    assert shown["case_reference"] == reference
    assert shown["overdue_minutes"] == 1
    assert "reason" not in shown


async def test_escalation_goes_up_to_the_last_level_then_stops(world: World) -> None:
    reference = await world.open_case(1)
    referral = await world.referrals.refer(reference, "up-112", "Danger", "deepa")
    world.clock.advance(timedelta(hours=1))
    for _ in range(5):
        await world.scheduler.run_due()
        world.clock.advance(timedelta(hours=12))
    final = await world.referrals.get(referral.id)
    assert final.escalation_level == 3
    assert final.next_deadline_at is None
    assert [t.state for t in await tasks_of(world.store)] == ["done", "done", "done"]
    with pytest.raises(ReferralConflict, match="last escalation level"):
        await world.referrals.escalate(referral.id, "deepa")
    # Acknowledged late, it leaves the overdue list, its history kept.
    late = await world.referrals.acknowledge(referral.id, "SI Rekha", "deepa")
    assert (late.status, late.escalation_level, late.overdue) == (
        ReferralStatus.ACKNOWLEDGED, 3, False)
    assert any("after its deadline" in t for t in await notes(world.store, late.case_id))


async def test_a_supervisor_escalates_by_hand_and_closes(world: World) -> None:
    reference = await world.open_case(1)
    referral = await world.referrals.refer(reference, "osc-lucknow", "Shelter", "deepa")
    escalated = await world.referrals.escalate(referral.id, "deepa")
    assert escalated.escalation_level == 1
    assert not escalated.overdue, "escalated early, but not past its SLA deadline"
    # The level-0 deadline task finds the level moved and changes nothing.
    world.clock.advance(timedelta(hours=24))
    await world.scheduler.run_due()
    assert (await world.referrals.get(referral.id)).escalation_level == 2  # level-1 task ran
    closed = await world.referrals.close(referral.id, "deepa", "Sheltered at the OSC")
    assert closed.status is ReferralStatus.CLOSED and closed.next_deadline_at is None
    with pytest.raises(ReferralConflict):
        await world.referrals.acknowledge(referral.id, "OSC", "deepa")
    world.clock.advance(timedelta(days=2))
    await world.scheduler.run_due()
    assert (await world.referrals.get(referral.id)).escalation_level == 2
    assert await world.referrals.overdue() == []


async def test_the_sweep_reschedules_a_lost_deadline_task(world: World) -> None:
    reference = await world.open_case(1)
    referral = await world.referrals.refer(reference, "up-112", "Danger", "deepa")
    # The task is lost, as if the instance died between the referral's commit and its task's.
    [task] = await tasks_of(world.store)
    await world.scheduler.cancel(task.id)
    async with world.store.transaction() as session:
        row = await session.get(ScheduledTask, task.id)
        assert row is not None
        await session.delete(row)
    world.clock.advance(timedelta(hours=1, minutes=10))
    assert await world.referrals.sweep() == 1
    assert await world.referrals.sweep() == 1, "found again, not doubled"
    assert len(await tasks_of(world.store)) == 1
    await world.scheduler.run_due()
    assert (await world.referrals.get(referral.id)).escalation_level == 1


# -- graded action against harassers ------------------------------------------------------------


async def test_a_harasser_moves_up_a_level_after_each_action_done(world: World) -> None:
    reference = await world.open_case(1, district="Kanpur Nagar")
    token = await world.harasser_token(reference)
    first = await world.harassers.propose(reference, token, "asha", "deepa")
    assert (first.level, first.kind.value, first.status.value) == (1, "warning-call", "assigned")
    assert first.basis == "first action against him"
    again = await world.harassers.propose(reference, token, "asha", "deepa")
    assert again.id == first.id, "proposed twice: one action"
    done = await world.harassers.record_outcome(first.id, "done", "asha", "He apologised")
    assert done.status.value == "done" and done.completed_by == "asha"
    assert (await world.harassers.record_outcome(first.id, "done", "asha")).id == first.id
    with pytest.raises(ReferralConflict):
        await world.harassers.record_outcome(first.id, "refused", "asha")

    second = await world.harassers.propose(reference, token, "asha", "deepa")
    assert (second.level, second.kind.value) == (2, "family-counselling")
    assert "level 1" in second.basis
    await world.harassers.record_outcome(second.id, "refused", "asha")

    third = await world.harassers.propose(reference, token, "asha", "deepa")
    assert (third.level, third.kind.value) == (3, "fir-referral")
    assert third.referral_id is not None
    fir = await world.referrals.get(third.referral_id)
    assert fir.unit_code == "ps-kanpur-kalyanpur-whd", "the station of the case's district"
    assert fir.status is ReferralStatus.OPEN
    assert any(t.kind == REFERRAL_DEADLINE for t in await tasks_of(world.store))

    case = await world.cases.get_by_reference(reference)
    actions = [(e.what, e.text) for e in case.timeline if e.kind == "action"]
    assert ("warning-call", f"Warning call to harasser {token}: done. He apologised") in actions
    assert any(what == "family-counselling" and "refused" in (text or "")
               for what, text in actions)
    assert any(what == "referred" for what, _ in actions)
    assert case.summary.status.value == "referred"
    assert not leaked(repr(case) + repr([first, second, third, fir]))


async def test_an_action_past_its_due_time_is_on_the_supervisors_overdue_list(
    world: World,
) -> None:
    reference = await world.open_case(1, district="Kanpur Nagar")
    token = await world.harasser_token(reference)
    action = await world.harassers.propose(reference, token, "asha", "deepa",
                                           due_in=timedelta(hours=4))
    world.clock.advance(timedelta(hours=3))
    assert await world.harassers.overdue() == []
    world.clock.advance(timedelta(hours=2))
    assert [a.id for a in await world.harassers.overdue()] == [action.id]
    await world.harassers.record_outcome(action.id, "done", "asha")
    assert await world.harassers.overdue() == []


async def test_a_repeat_harasser_starts_at_level_two(world: World) -> None:
    first_case = await world.open_case(1)
    second_case = await world.open_case(2)
    token = await world.harasser_token(second_case)
    assert token == await world.harasser_token(first_case), "one man, one token"
    action = await world.harassers.propose(second_case, token, "asha", "deepa")
    assert action.level == 2
    assert action.basis == "repeat harasser: named in 2 complaints"


async def test_harasser_action_refusals(world: World) -> None:
    reference = await world.open_case(1)  # Lucknow: two stations, none chosen for her
    token = await world.harasser_token(reference)
    with pytest.raises(ReferralInvalid) as error:
        await world.harassers.propose(reference, "H-00000000", "asha", "deepa")
    assert error.value.field == "harasser_token"
    with pytest.raises(ReferralInvalid) as error:
        await world.harassers.propose(reference, token, "esha", "deepa")
    assert error.value.field == "owner", "an admin is not an officer"
    with pytest.raises(ReferralInvalid) as error:
        await world.harassers.propose(reference, token, "asha", "deepa", level=3)
    assert error.value.field == "unit"
    fir = await world.harassers.propose(reference, token, "asha", "deepa", level=3,
                                        unit_code="ps-lucknow-hazratganj-whd")
    assert fir.basis == "chosen by deepa" and fir.referral_id is not None
    with pytest.raises(ReferralInvalid) as error:
        await world.harassers.record_outcome(fir.id, "assigned", "asha")
    assert error.value.field == "outcome"
    async with world.store.session() as session:
        count = await session.scalar(select(func.count()).select_from(Referral))
    assert count == 1
