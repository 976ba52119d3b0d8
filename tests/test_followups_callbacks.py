"""Callbacks after abandoned calls and follow-up calls (issue 7, items 2 and 3).

The service-level tests run on SQLite and PostgreSQL (``migrated_store``) with a scripted
dialler; the end-to-end ones run the shipped dialplan on the simulated PBX over AMI/TCP.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from callcenter.cases.audit import AuditLog
from callcenter.cases.identities import IdentityStore
from callcenter.cases.service import CaseService, WrapUpForm
from callcenter.cases.vault import Keyring, Vault, generate_key
from callcenter.followups import Backoff, ScheduledTask, Scheduler, TaskContext
from callcenter.followups.callback_models import Callback
from callcenter.followups.callbacks import (
    CallbackConflict,
    CallbackInvalid,
    CallbackService,
    CallbackSettings,
)
from callcenter.followups.dialler import AmiCallSettler, AmiDialler, DialResult, OutboundCall
from callcenter.pbx.events import AgentCalled
from callcenter.pbx.models import CallRecord
from callcenter.sim.helpline import OUTBOUND_TRUNK, SimAgent
from callcenter.store import Base, Store
from tests.support.helpline import Helpline, helpline, until

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
HER = "+91 98765 43210"
HER_DIGITS = "9876543210"
NEUTRAL = "05224001234"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class ScriptedDialler:
    """Answers each attempt from a script; keeps what it was asked to dial."""

    def __init__(self, *results: DialResult) -> None:
        self.results = list(results)
        self.calls: list[OutboundCall] = []

    async def place(self, ctx: TaskContext, call: OutboundCall) -> DialResult:
        await ctx.before_call()
        self.calls.append(call)
        return self.results.pop(0)


@pytest.fixture
def vault() -> Vault:
    return Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


Build = Callable[..., tuple[CallbackService, Scheduler]]


@pytest.fixture
def build(migrated_store: Store, vault: Vault, clock: FakeClock) -> Build:
    def make(dialler: object = None, **settings: object) -> tuple[CallbackService, Scheduler]:
        settings.setdefault("presented_number", NEUTRAL)
        settings.setdefault("first_delay", timedelta(0))
        service = CallbackService(
            migrated_store, vault, CallbackSettings(**settings),  # type: ignore[arg-type]
            dialler=dialler, clock=clock,  # type: ignore[arg-type]
        )
        scheduler = Scheduler(
            migrated_store, "app-1", service.handlers(), clock,
            hooks=[service.on_task_outcome], backoff=Backoff(base=timedelta(minutes=5)),
        )
        service.bind(scheduler)
        return service, scheduler

    return make


async def abandoned_call(
    store: Store, vault: Vault, *, n: int, callback_ok: bool | None,
    outcome: str = "abandoned_queue", category: str | None = "stalking",
    number: str = HER,
) -> CallRecord:
    identity = await IdentityStore(store).remember(vault.admit_caller_id(number))
    async with store.transaction() as session:
        record = CallRecord(
            node="pbx1", linkedid=f"1795327929.{n}", caller_identity_id=identity,
            caller_token=vault.token_for(number).code, category=category, language="hi",
            callback_ok=callback_ok, outcome=outcome,
            started_at=T0,
        )
        session.add(record)
    return record


async def _callbacks(store: Store) -> list[Callback]:
    async with store.session() as session:
        return list(await session.scalars(select(Callback).order_by(Callback.id)))


# -- schema -----------------------------------------------------------------------------


async def test_migration_matches_the_model(migrated_store: Store) -> None:
    def diff(connection: Connection) -> list[object]:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with migrated_store.engine.connect() as connection:
        changes = await connection.run_sync(diff)
    assert [c for c in changes if "callback" in repr(c)] == []


def test_the_presented_number_is_never_the_helplines() -> None:
    with pytest.raises(ValueError):
        CallbackSettings(presented_number="1090")
    with pytest.raises(ValueError):
        CallbackSettings(presented_number="not a number")
    assert CallbackSettings().presented_number != "1090"


# -- the decision after an abandoned call ---------------------------------------------------


async def test_opted_in_abandon_is_called_back_and_the_outcome_lands_on_the_callback(
    migrated_store: Store, vault: Vault, clock: FakeClock, build: Build
) -> None:
    dialler = ScriptedDialler(DialResult.NO_ANSWER, DialResult.REACHED)
    service, scheduler = build(dialler)
    record = await abandoned_call(migrated_store, vault, n=1, callback_ok=True)

    view = await service.consider(record)
    assert view is not None and view.status == "scheduled" and view.reason == "abandoned_queue"
    assert await scheduler.run_due() == 1
    [row] = await _callbacks(migrated_store)
    assert (row.status, row.outcome, row.attempts) == ("scheduled", "no_answer", 1)

    clock.advance(timedelta(minutes=5))
    assert await scheduler.run_due() == 1
    [row] = await _callbacks(migrated_store)
    assert (row.status, row.outcome, row.attempts, row.open_for_identity) == (
        "done", "reached", 2, None)
    # The dialler got her number only at dial time, with the neutral number to present.
    assert [c.destination for c in dialler.calls] == ["+919876543210"] * 2
    assert {c.presented_number for c in dialler.calls} == {NEUTRAL}
    assert {c.token for c in dialler.calls} == {vault.token_for(HER).code}


async def test_abandon_without_opt_in_waits_for_a_supervisor_and_is_never_dialled(
    migrated_store: Store, vault: Vault, build: Build
) -> None:
    dialler = ScriptedDialler(DialResult.REACHED)
    service, scheduler = build(dialler)
    record = await abandoned_call(migrated_store, vault, n=1, callback_ok=False)
    view = await service.consider(record)
    assert view is not None and view.status == "awaiting_decision"
    assert await scheduler.run_due() == 0 and dialler.calls == []
    assert [v.id for v in await service.awaiting_decision()] == [view.id]

    approved = await service.approve(view.id, "sup.meena")
    assert (approved.status, approved.decided_by) == ("scheduled", "sup.meena")
    with pytest.raises(CallbackConflict):
        await service.dismiss(view.id, "sup.meena")
    assert await scheduler.run_due() == 1
    assert (await service.get(view.id)).outcome == "reached"
    assert await service.awaiting_decision() == []


async def test_a_dismissed_abandon_is_never_dialled(
    migrated_store: Store, vault: Vault, clock: FakeClock, build: Build
) -> None:
    dialler = ScriptedDialler()
    service, scheduler = build(dialler)
    view = await service.consider(
        await abandoned_call(migrated_store, vault, n=1, callback_ok=None)
    )
    assert view is not None
    dismissed = await service.dismiss(view.id, "sup.meena")
    assert dismissed.status == "dismissed"
    clock.advance(timedelta(days=1))
    assert await scheduler.run_due() == 0 and dialler.calls == []


@pytest.mark.parametrize(
    ("outcome", "category"), [("answered", "stalking"), ("abandoned_ivr", None)]
)
async def test_answered_calls_and_ivr_abandons_before_a_category_make_no_callback(
    migrated_store: Store, vault: Vault, build: Build, outcome: str, category: str | None
) -> None:
    service, _scheduler = build(ScriptedDialler())
    record = await abandoned_call(
        migrated_store, vault, n=1, callback_ok=True, outcome=outcome, category=category
    )
    assert await service.consider(record) is None
    assert await _callbacks(migrated_store) == []


async def test_a_repeat_abandon_updates_the_open_callback_and_a_replay_changes_nothing(
    migrated_store: Store, vault: Vault, clock: FakeClock, build: Build
) -> None:
    dialler = ScriptedDialler(DialResult.REACHED)
    service, scheduler = build(dialler, first_delay=timedelta(minutes=2))
    first = await abandoned_call(migrated_store, vault, n=1, callback_ok=True)
    await service.consider(first)
    clock.advance(timedelta(minutes=1))
    second = await abandoned_call(migrated_store, vault, n=2, callback_ok=True,
                                  outcome="abandoned_ivr")
    await service.consider(second)
    assert await service.consider(second) is None, "a replayed call-ended event"

    [row] = await _callbacks(migrated_store)
    assert (row.repeats, row.call_record_id, row.reason) == (2, second.id, "abandoned_ivr")
    clock.advance(timedelta(minutes=5))
    assert await scheduler.run_due() == 1
    assert len(dialler.calls) == 1, "one call to her for two abandons"
    async with migrated_store.session() as session:
        assert await session.scalar(select(func.count()).select_from(ScheduledTask)) == 1


async def test_her_latest_not_safe_takes_a_scheduled_callback_back_to_the_supervisors(
    migrated_store: Store, vault: Vault, clock: FakeClock, build: Build
) -> None:
    dialler = ScriptedDialler()
    service, scheduler = build(dialler, first_delay=timedelta(minutes=2))
    await service.consider(await abandoned_call(migrated_store, vault, n=1, callback_ok=True))
    view = await service.consider(
        await abandoned_call(migrated_store, vault, n=2, callback_ok=False)
    )
    assert view is not None and view.status == "awaiting_decision"
    clock.advance(timedelta(hours=1))
    assert await scheduler.run_due() == 0 and dialler.calls == []


async def test_two_women_get_two_callbacks(
    migrated_store: Store, vault: Vault, build: Build
) -> None:
    service, _scheduler = build(ScriptedDialler())
    await service.consider(await abandoned_call(migrated_store, vault, n=1, callback_ok=True))
    await service.consider(await abandoned_call(
        migrated_store, vault, n=2, callback_ok=True, number="+91 91234 56789"))
    assert len(await _callbacks(migrated_store)) == 2


async def test_giving_up_keeps_the_last_attempts_result(
    migrated_store: Store, vault: Vault, clock: FakeClock, build: Build
) -> None:
    dialler = ScriptedDialler(DialResult.BUSY, DialResult.NO_ANSWER)
    service, scheduler = build(dialler, max_attempts=2)
    view = await service.consider(
        await abandoned_call(migrated_store, vault, n=1, callback_ok=True)
    )
    assert view is not None
    await scheduler.run_due()
    clock.advance(timedelta(hours=1))
    await scheduler.run_due()
    after = await service.get(view.id)
    assert (after.status, after.outcome, after.attempts) == ("failed", "no_answer", 2)


async def test_no_agent_free_is_retried_soon_and_not_counted_as_no_answer(
    migrated_store: Store, vault: Vault, clock: FakeClock, build: Build
) -> None:
    dialler = ScriptedDialler(DialResult.AGENT_TIMEOUT, DialResult.REACHED)
    service, scheduler = build(dialler, agent_timeout_retry=timedelta(minutes=1))
    view = await service.consider(
        await abandoned_call(migrated_store, vault, n=1, callback_ok=True)
    )
    assert view is not None
    await scheduler.run_due()
    assert (await service.get(view.id)).outcome == "agent_timeout"
    clock.advance(timedelta(minutes=1))
    assert await scheduler.run_due() == 1
    assert (await service.get(view.id)).outcome == "reached"


async def test_the_agent_records_wrong_person_only_after_an_answered_call(
    migrated_store: Store, vault: Vault, build: Build
) -> None:
    service, scheduler = build(ScriptedDialler(DialResult.REACHED))
    view = await service.consider(
        await abandoned_call(migrated_store, vault, n=1, callback_ok=True)
    )
    assert view is not None
    with pytest.raises(CallbackConflict):
        await service.record_outcome(view.id, "wrong_person", "agent.asha")
    await scheduler.run_due()
    with pytest.raises(CallbackInvalid):
        await service.record_outcome(view.id, "reached", "agent.asha")
    after = await service.record_outcome(view.id, "unsafe_to_talk", "agent.asha")
    assert (after.outcome, after.outcome_by) == ("unsafe_to_talk", "agent.asha")


# -- the sweep: nothing lost when the instance died before the decision ---------------------


class RecordingKeys:
    """Task keys that fail while ``down``; remembers what was deleted."""

    def __init__(self) -> None:
        self.down = False
        self.forgotten: list[int] = []

    async def forget(self, task_id: int) -> bool:
        if self.down:
            raise ConnectionError("AMI away")
        self.forgotten.append(task_id)
        return True


async def ended_abandon(store: Store, vault: Vault, *, n: int, callback_ok: bool | None,
                        ended: datetime, number: str = HER) -> CallRecord:
    record = await abandoned_call(store, vault, n=n, callback_ok=callback_ok, number=number)
    async with store.transaction() as session:
        row = await session.get(CallRecord, record.id)
        assert row is not None
        row.ended_at = ended
        row.started_at = ended - timedelta(minutes=1)
    record.ended_at, record.started_at = ended, ended - timedelta(minutes=1)
    return record


async def test_the_sweep_decides_an_abandon_whose_decision_was_lost_once(
    migrated_store: Store, vault: Vault, clock: FakeClock, build: Build
) -> None:
    dialler = ScriptedDialler(DialResult.REACHED)
    service, scheduler = build(dialler)
    # The instance died after recording her abandon: call_ended never ran for it.
    lost = await ended_abandon(migrated_store, vault, n=1, callback_ok=True,
                               ended=T0 - timedelta(minutes=10))
    too_old = await ended_abandon(migrated_store, vault, n=2, callback_ok=True,
                                  ended=T0 - timedelta(hours=7), number="+91 98765 40000")
    report = await service.sweep()
    assert (report.decided, report.failed) == (1, 0)
    [row] = await _callbacks(migrated_store)
    assert (row.status, row.call_record_id) == ("scheduled", lost.id)
    assert too_old.id != row.call_record_id
    # Another sweep, or a second instance, or the live path replaying: nothing twice.
    again, other = await asyncio.gather(service.sweep(), build(dialler)[0].sweep())
    assert again.decided + other.decided == 0
    assert await service.consider(lost) is None
    assert await scheduler.run_due() == 1 and len(dialler.calls) == 1
    assert len(await _callbacks(migrated_store)) == 1


async def test_the_sweep_never_resurrects_a_dismissed_callback_nor_overrides_her_later_word(
    migrated_store: Store, vault: Vault, clock: FakeClock, build: Build
) -> None:
    dialler = ScriptedDialler()
    service, scheduler = build(dialler)
    # Her first abandon was decided and dismissed; a second one, earlier than the
    # dismissal, lost its decision.
    first = await ended_abandon(migrated_store, vault, n=1, callback_ok=None,
                                ended=T0 - timedelta(minutes=30))
    view = await service.consider(first)
    assert view is not None
    await ended_abandon(migrated_store, vault, n=2, callback_ok=True,
                        ended=T0 - timedelta(minutes=20))
    await service.dismiss(view.id, "sup.meena")
    assert (await service.sweep()).decided == 1
    [row] = await _callbacks(migrated_store)
    assert (row.status, row.repeats, row.task_id) == ("dismissed", 2, None)
    assert await scheduler.run_due() == 0 and dialler.calls == []

    # Another woman: "not safe" lost, then a later "safe" call scheduled the callback.
    other = "+91 98765 41111"
    await ended_abandon(migrated_store, vault, n=3, callback_ok=False,
                        ended=T0 - timedelta(minutes=20), number=other)
    later = await ended_abandon(migrated_store, vault, n=4, callback_ok=True,
                                ended=T0 - timedelta(minutes=10), number=other)
    scheduled = await service.consider(later)
    assert scheduled is not None and scheduled.status == "scheduled"
    assert (await service.sweep()).decided == 1
    after = await service.get(scheduled.id)
    assert (after.status, after.repeats) == ("scheduled", 2), "her latest word stands"


async def test_a_finished_tasks_astdb_keys_are_deleted_after_commit_and_swept_when_it_failed(
    migrated_store: Store, vault: Vault, clock: FakeClock,
) -> None:
    keys = RecordingKeys()
    dialler = ScriptedDialler(DialResult.NO_ANSWER, DialResult.REACHED)
    service = CallbackService(
        migrated_store, vault, CallbackSettings(presented_number=NEUTRAL,
                                                first_delay=timedelta(0)),
        dialler=dialler, task_keys=keys, clock=clock,
    )
    scheduler = Scheduler(migrated_store, "app-1", service.handlers(), clock,
                          hooks=[service.on_task_outcome],
                          backoff=Backoff(base=timedelta(minutes=5)))
    service.bind(scheduler)
    view = await service.consider(
        await abandoned_call(migrated_store, vault, n=1, callback_ok=True))
    assert view is not None
    await scheduler.run_due()
    await asyncio.sleep(0)
    assert keys.forgotten == [], "a retried task may still be settled: keys stay"
    clock.advance(timedelta(minutes=5))
    keys.down = True
    await scheduler.run_due()
    await service.stop_sweeping()  # lets the after-commit delete run (and fail)
    [row] = await _callbacks(migrated_store)
    assert row.status == "done" and keys.forgotten == []
    task_id = row.task_id
    keys.down = False
    assert (await service.sweep()).keys_forgotten == 0, "not before the task is an hour old"
    clock.advance(timedelta(hours=1, minutes=1))
    assert (await service.sweep()).keys_forgotten == 1
    assert keys.forgotten == [task_id]
    assert (await service.sweep()).keys_forgotten == 0, "each finished task is swept once"

    # With the PBX there, the keys go right after the final state is committed.
    second = await service.consider(await abandoned_call(
        migrated_store, vault, n=2, callback_ok=True, number="+91 98765 42222"))
    assert second is not None
    dialler.results.append(DialResult.REACHED)
    await scheduler.run_due()
    await service.stop_sweeping()
    [_, row2] = await _callbacks(migrated_store)
    assert row2.status == "done" and keys.forgotten == [task_id, row2.task_id]


async def test_the_dialler_forgets_both_keys_of_a_task_one_by_one() -> None:
    class Ops:
        def __init__(self) -> None:
            self.deleted: list[tuple[str, str]] = []

        async def db_del(self, family: str, key: str) -> bool:
            if family == "wpl_call" and key == "8":
                raise ConnectionError("AMI away")
            self.deleted.append((family, key))
            return True

    ops = Ops()
    dialler = AmiDialler(object(), ops=ops)  # type: ignore[arg-type]
    assert await dialler.forget(7) is True
    assert ops.deleted == [("wpl_call", "7"), ("wpl_task", "7")]
    assert await dialler.forget(8) is False, "a failure is reported, the other key still goes"
    assert ops.deleted[-1] == ("wpl_task", "8")


# -- follow-up calls on a case -------------------------------------------------------------


async def test_follow_up_call_on_a_case_runs_the_same_path_and_writes_the_timeline(
    migrated_store: Store, vault: Vault, clock: FakeClock, build: Build
) -> None:
    dialler = ScriptedDialler(DialResult.REACHED)
    service, scheduler = build(dialler)
    cases = CaseService(migrated_store, vault, AuditLog(migrated_store), clock=clock)
    record = await abandoned_call(migrated_store, vault, n=1, callback_ok=True,
                                  outcome="answered")
    case = (await cases.create_from_wrapup(record, WrapUpForm(), "agent.asha")).summary

    with pytest.raises(CallbackInvalid):
        await service.schedule_followup(case.id, T0 - timedelta(days=1), "agent.asha")
    later = await service.schedule_followup(case.id, T0 + timedelta(days=3), "agent.asha")
    cancelled = await service.schedule_followup(case.id, T0 + timedelta(days=4), "agent.asha")
    assert (await service.cancel(cancelled.id, "agent.asha")).status == "cancelled"
    assert [v.id for v in await service.for_case(case.id)] == [later.id, cancelled.id]

    assert await scheduler.run_due() == 0, "not before its date"
    clock.advance(timedelta(days=5))
    assert await scheduler.run_due() == 1
    assert len(dialler.calls) == 1 and dialler.calls[0].reason == "followup"
    assert (await service.get(later.id)).outcome == "reached"
    timeline = (await cases.get_by_reference(case.reference)).timeline
    texts = [e.text or "" for e in timeline]
    assert any("follow-up call attempt 1: reached" in t for t in texts), texts
    assert any("cancelled" in t for t in texts)
    assert not any(HER_DIGITS in t for t in texts)


# -- end to end on the simulated PBX ---------------------------------------------------------


async def _setup_line(line: Helpline) -> None:
    await line.start_backend()
    await line.wait_heartbeat()
    # Her phone (behind the outbound trunk) answers the callback after a second.
    line.sim.core.phones[OUTBOUND_TRUNK].answer_after = 1.0


def _sim_service(line: Helpline) -> tuple[CallbackService, Scheduler]:
    assert line.backend is not None
    ops = line.backend.node.ops
    service = CallbackService(
        line.store, line.vault,
        CallbackSettings(presented_number=NEUTRAL, first_delay=timedelta(0), queue_wait_s=60),
        dialler=AmiDialler(line.backend.client, ops=ops),
    )
    scheduler = Scheduler(line.store, "app-1", service.handlers(),
                          settler=AmiCallSettler(ops), hooks=[service.on_task_outcome])
    service.bind(scheduler)
    return service, scheduler


async def _abandon(line: Helpline, answers: list[str]) -> CallRecord:
    assert line.backend is not None
    # Her agent is busy elsewhere (paused): she waits, then gives up.
    await line.add_member("wpl-general-hi", "agent1", paused=True)
    caller = line.call(answers, number=HER, patience=3)
    await until(lambda: caller.done.is_set(), within=30)
    await until(lambda: line.backend is not None and line.backend.node.model.calls == {},
                within=10)
    await line.backend.node.drain()
    record = await line.backend.node._recorder.get(  # type: ignore[union-attr]
        "pbx1", caller.outcome.uniqueid
    )
    assert record is not None and record.outcome == "abandoned_queue"
    return record


async def test_e2e_opted_in_abandon_rings_an_agent_first_then_her_never_showing_her_number(
    migrated_store: Store,
) -> None:
    agent = SimAgent("agent1", "Agent One", answer_after=1.0, hangup_after=8.0)
    async with helpline(migrated_store, [agent]) as line:
        await _setup_line(line)
        # Danger: silence. Language: Hindi. Main: stalking. Callback safe: yes.
        record = await _abandon(line, ["", "1", "3", "1"])
        assert record.callback_ok is True
        service, scheduler = _sim_service(line)
        view = await service.call_ended("pbx1", record.linkedid)
        assert view is not None and view.status == "scheduled"

        # What the agent's console card is built from, as the model has it when she rings.
        assert line.backend is not None
        model = line.backend.node.model
        cards: list[tuple[str | None, str | None, str | None]] = []

        def on_event(event: object) -> None:
            if isinstance(event, AgentCalled):
                channel = model.channels[event.caller.uniqueid]
                cards.append((channel.label, channel.variables.get("WPL_FLAGS"),
                              channel.variables.get("WPL_CATEGORY")))

        line.backend.node.on_event(on_event)
        # The agent is free for callbacks now.
        await line.add_member("wpl-callback", "agent1")
        start = len(line.events)
        assert await scheduler.run_due() == 1

        after = await service.get(view.id)
        assert (after.status, after.outcome, after.attempts) == ("done", "reached", 1)
        [originate] = line.sim.core.originate_log
        assert (originate.target, originate.context, originate.exten) == (
            "Local/s@wpl-callback", "wpl-callback-dial", "s"), "her number is not the Exten"
        events = line.events[start:]
        names = [n for n, _ in events]
        connect = names.index("AgentConnect")
        dial_her = next(
            i for i, (n, p) in enumerate(events)
            if n == "DialBegin" and dict(p).get("DestChannel", "").startswith(
                f"PJSIP/{OUTBOUND_TRUNK}")
        )
        assert connect < dial_her, "an agent is on the line before her phone rings"
        # Her phone shows the neutral number, never 1090.
        dial = dict(events[dial_her][1])
        assert dial["CallerIDNum"] == NEUTRAL
        # The agent's phone and console: the token and the reason, never her number.
        called = dict(events[names.index("AgentCalled")][1])
        assert called["CallerIDName"] == view.token
        assert cards == [(view.token, "callback,abandoned_queue", "stalking")]
        digits = re.compile(HER_DIGITS)
        for name, pairs in events:
            headers = dict(pairs)
            if "agent1" in headers.get("Channel", "") + headers.get("DestChannel", "") or \
                    name in ("AgentCalled", "AgentConnect", "AgentComplete"):
                assert not any(digits.search(v) for v in headers.values()), (name, headers)


async def test_e2e_abandon_without_opt_in_is_never_dialled_and_waits_for_a_supervisor(
    migrated_store: Store,
) -> None:
    async with helpline(migrated_store, [SimAgent("agent1", "Agent One")]) as line:
        await _setup_line(line)
        # Callback safe: no.
        record = await _abandon(line, ["", "1", "3", "2"])
        assert record.callback_ok is False
        service, scheduler = _sim_service(line)
        await line.add_member("wpl-callback", "agent1")
        view = await service.call_ended("pbx1", record.linkedid)
        assert view is not None and view.status == "awaiting_decision"
        assert await scheduler.run_due() == 0
        assert line.sim.core.originate_log == []
        assert [v.token for v in await service.awaiting_decision()] == [view.token]


# -- over HTTP ---------------------------------------------------------------------------------


async def test_http_supervisors_decide_agents_record_and_set_follow_ups(
    migrated_store: Store,
) -> None:
    import aiohttp
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import CollectorRegistry

    from callcenter.bus import InProcessBus
    from callcenter.cases.consent import ConsentService
    from callcenter.cases.search import CaseSearch
    from callcenter.web.app import make_app
    from callcenter.web.deps import StoreCallLookup, WebDeps
    from tests.support.cases_web import _seed, leaked_numbers
    from tests.support.web import (
        MemoryAgentDirectory,
        add_staff,
        cheap_accounts,
        sign_in,
        web_options,
    )

    vault = Vault(Keyring.from_masters({"k1": generate_key()}, "k1"))
    audit = AuditLog(migrated_store)
    cases = CaseService(migrated_store, vault, audit)
    consent = ConsentService(migrated_store, vault, audit)
    accounts = cheap_accounts(migrated_store)
    directory = MemoryAgentDirectory()
    await add_staff(accounts, directory)
    seeded = await _seed(migrated_store, vault, cases, consent)
    dialler = ScriptedDialler(DialResult.REACHED)
    service = CallbackService(migrated_store, vault,
                              CallbackSettings(presented_number=NEUTRAL), dialler=dialler)
    scheduler = Scheduler(migrated_store, "app-1", service.handlers(),
                          hooks=[service.on_task_outcome])
    service.bind(scheduler)
    # asha's caller abandoned a later call without saying a callback is safe.
    asha = seeded["asha"]
    async with migrated_store.transaction() as session:
        record = CallRecord(node="up-east", linkedid="1795327999.1",
                            caller_identity_id=asha.identity_id, caller_token=asha.caller_token,
                            category="stalking", outcome="abandoned_queue", callback_ok=False)
        session.add(record)
    pending = await service.consider(record)
    assert pending is not None

    async with InProcessBus() as bus:
        deps = WebDeps(
            accounts=accounts, agents=directory, calls=StoreCallLookup(migrated_store),
            bus=bus, cases=cases, consent=consent, search=CaseSearch(migrated_store, audit),
            audit=audit, store=migrated_store, callbacks=service,
            options=web_options(login_limit_per_address=1000, login_limit_per_user=1000),
            registry=CollectorRegistry(),
        )
        client = TestClient(TestServer(make_app(deps), host="127.0.0.1"),
                            cookie_jar=aiohttp.CookieJar(unsafe=True))
        await client.start_server()
        bodies: list[str] = []
        try:
            async def call(method: str, path: str, who: str, **kwargs: object) -> tuple[int, Any]:
                headers = {"X-CSRF-Token": await sign_in(client, who)}
                response = await client.request(method, path, headers=headers, **kwargs)
                text = await response.text()
                bodies.append(text)
                return response.status, (await response.json() if text else None)

            status, _ = await call("GET", "/api/callbacks/awaiting", "asha")
            assert status == 403, "agents do not decide about callbacks"
            status, body = await call("GET", "/api/callbacks/awaiting", "deepa")
            assert status == 200
            assert [(c["id"], c["token"], c["reason"]) for c in body["callbacks"]] == [
                (pending.id, asha.caller_token, "abandoned_queue")]
            status, body = await call("POST", f"/api/callbacks/{pending.id}/approve", "deepa",
                                      json={})
            assert (status, body["status"], body["decided_by"]) == (200, "scheduled", "deepa")
            status, _ = await call("POST", f"/api/callbacks/{pending.id}/dismiss", "deepa")
            assert status == 409 and "callback_conflict" in bodies[-1]
            await scheduler.run_due()
            # asha took the callback's call (the recorder's row of it); bela did not.
            async with migrated_store.transaction() as session:
                session.add(CallRecord(
                    node="up-east", linkedid="1795328100.7", caller_token=asha.caller_token,
                    queue="wpl-callback", agent_interface="PJSIP/agent1001",
                    started_at=datetime.now(UTC) + timedelta(seconds=1), outcome="answered"))
            status, _ = await call("POST", f"/api/callbacks/{pending.id}/outcome", "bela",
                                   json={"outcome": "wrong_person"})
            assert status == 403 and "not_your_callback" in bodies[-1]
            assert (await service.get(pending.id)).outcome == "reached"
            status, body = await call("POST", f"/api/callbacks/{pending.id}/outcome", "asha",
                                      json={"outcome": "wrong_person"})
            assert (status, body["outcome"], body["outcome_by"]) == (200, "wrong_person", "asha")
            status, _ = await call("POST", f"/api/callbacks/{pending.id}/outcome", "asha",
                                   json={"outcome": "reached"})
            assert status == 422
            status, _ = await call("POST", f"/api/callbacks/{pending.id}/outcome", "deepa",
                                   json={"outcome": "unsafe_to_talk"})
            # A supervisor passes the check (an agent's word, once recorded, stands).
            assert status == 409 and "callback_conflict" in bodies[-1]

            # Follow-ups: asha works on her case; bela does not.
            path = f"/api/cases/{asha.reference}/followups"
            due = (datetime.now(UTC) + timedelta(days=2)).isoformat()
            status, _ = await call("POST", path, "bela", json={"due_at": due})
            assert status == 403
            status, _ = await call("POST", path, "asha",
                                   json={"due_at": "2026-12-05T10:00:00"})
            assert status == 422, "a time without its offset is refused"
            status, body = await call("POST", path, "asha", json={"due_at": due})
            assert (status, body["kind"], body["status"]) == (201, "followup", "scheduled")
            followup = body["id"]
            status, body = await call("GET", path, "asha")
            assert [c["id"] for c in body["callbacks"]] == [followup]
            other = f"/api/cases/{seeded['bela'].reference}/followups/{followup}"
            status, _ = await call("DELETE", other, "deepa")
            assert status == 404, "a follow-up is cancelled through its own case"
            status, body = await call("DELETE", f"{path}/{followup}", "asha")
            assert (status, body["status"]) == (200, "cancelled")
        finally:
            await client.close()
    assert not any(leaked_numbers(text) for text in bodies)


async def test_build_followups_wires_an_abandon_to_a_placed_callback_in_a_callcenter(
    migrated_store: Store,
) -> None:
    """The wiring the composition root uses, over the real CallCenter and the simulator."""
    from callcenter.app import CallCenter
    from callcenter.config import FollowupsSettings
    from tests.support.helpline import backend_settings

    agent = SimAgent("agent1", "Agent One", answer_after=1.0, hangup_after=8.0)
    async with helpline(migrated_store, [agent]) as line:
        line.sim.core.phones[OUTBOUND_TRUNK].answer_after = 1.0
        settings = backend_settings(line).model_copy(update={"followups": FollowupsSettings(
            callback_presented_number=NEUTRAL, callback_first_delay_s=0,
            callback_queue_wait_s=60,
        )})
        center = CallCenter(settings, vault=line.vault, instance_id="app-1")
        await center.start()
        try:
            runtime = center.nodes["main"]
            assert center.followups is not None  # built and run by the composition root
            await until(lambda: line.sim.core.db_get("wpl", "heartbeat") is not None)
            ops = runtime.node.ops
            await ops.add_member("wpl-general-hi", "PJSIP/agent1", member_name="agent1",
                                 paused=True, reason="meeting")
            await ops.add_member("wpl-callback", "PJSIP/agent1", member_name="agent1")
            caller = line.call(["", "1", "3", "1"], number=HER, patience=3)
            await until(lambda: caller.done.is_set(), within=30)
            # Nobody calls the service by hand: the call's end schedules, the scheduler dials.
            await until(lambda: len(line.sim.core.originate_log) == 1, within=30)

            async def outcome() -> str | None:
                rows = await _callbacks(migrated_store)
                return rows[0].outcome if rows else None

            for _ in range(300):
                if await outcome() is not None:
                    break
                await asyncio.sleep(0.05)
            [row] = await _callbacks(migrated_store)
            assert (row.status, row.outcome, row.reason) == ("done", "reached", "abandoned_queue")
        finally:
            await center.stop()
