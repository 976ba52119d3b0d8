"""The follow-up scheduler: durable, fenced, exactly once (issue 7, item 1).

Everything here runs on a real SQLite file and a real PostgreSQL server (``migrated_store``),
except the two-instance run, which needs PostgreSQL's row locks.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.followups import (
    TASK_VARIABLE,
    Backoff,
    LeaseLost,
    RetryTask,
    ScheduledTask,
    Scheduler,
    Settlement,
    TaskContext,
    TaskFailed,
    TaskPayloadError,
    TaskReport,
    TaskState,
)
from callcenter.store import Base, Store
from tests.support.services import create_database, drop_database

T0 = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
LEASE = timedelta(seconds=60)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class RecordingPbx:
    """What a handler dials through, keeping the PBX's Originate log.

    It also plays the PBX side of settlement the way the shipped dialplan is meant to: a
    settler's fence for a task (AstDB ``wpl_task/<id>``) makes any older call of that task
    hang up before it dials her, and a call that did dial leaves its mark.
    """

    def __init__(self) -> None:
        self.originates: list[tuple[int, int]] = []
        self.refused: list[tuple[int, int]] = []
        self.fences: dict[int, int] = {}
        self.live: set[int] = set()

    async def originate(self, variables: dict[str, str]) -> None:
        task_id, fence = (int(part) for part in variables[TASK_VARIABLE].split(":"))
        await asyncio.sleep(0)  # the action is on the wire
        if self.fences.get(task_id, 0) > fence:
            self.refused.append((task_id, fence))
            return
        self.originates.append((task_id, fence))

    async def settle(self, task_id: int, fence: int) -> Settlement:
        self.fences[task_id] = max(self.fences.get(task_id, 0), fence)
        if task_id in self.live:
            return Settlement.LIVE
        if any(placed == task_id for placed, _ in self.originates):
            return Settlement.PLACED
        return Settlement.NOT_PLACED

    def dialled(self) -> collections.Counter[int]:
        return collections.Counter(task_id for task_id, _ in self.originates)


class ScriptedSettler:
    def __init__(self, verdict: Settlement) -> None:
        self.verdict = verdict
        self.asked: list[tuple[int, int]] = []

    async def settle(self, task_id: int, fence: int) -> Settlement:
        self.asked.append((task_id, fence))
        return self.verdict


async def _task(store: Store, task_id: int) -> ScheduledTask:
    async with store.session() as session:
        row = await session.get(ScheduledTask, task_id)
    assert row is not None
    return row


def _due(row: ScheduledTask) -> datetime:
    return row.due_at if row.due_at.tzinfo else row.due_at.replace(tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_scheduler(
    migrated_store: Store, clock: FakeClock
) -> Callable[..., Scheduler]:
    def make(instance_id: str = "app-1", **kwargs: object) -> Scheduler:
        kwargs.setdefault("lease", LEASE)
        kwargs.setdefault("backoff", Backoff(base=timedelta(minutes=1), cap=timedelta(hours=1)))
        handlers = kwargs.pop("handlers")
        return Scheduler(migrated_store, instance_id, handlers, clock, **kwargs)  # type: ignore[arg-type]

    return make


# -- schema ---------------------------------------------------------------------------


async def test_migration_matches_the_model(migrated_store: Store) -> None:
    def diff(connection: Connection) -> list[object]:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with migrated_store.engine.connect() as connection:
        changes = await connection.run_sync(diff)
    ours = [c for c in changes if "scheduled_task" in repr(c)]
    assert ours == []


# -- claim, run, commit -------------------------------------------------------------------


async def test_due_task_is_claimed_run_and_recorded(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    seen: list[tuple[int, dict[str, object], int]] = []

    async def callback(ctx: TaskContext) -> str:
        seen.append((ctx.task_id, dict(ctx.payload), ctx.fence))
        return "reached"

    scheduler = make_scheduler(handlers={"callback": callback})
    now_id = await scheduler.schedule("callback", {"callback_id": 7}, T0)
    later_id = await scheduler.schedule("callback", {"callback_id": 8}, T0 + timedelta(hours=1))

    assert await scheduler.run_due() == 1
    assert seen == [(now_id, {"callback_id": 7}, 1)]
    row = await _task(migrated_store, now_id)
    assert (row.state, row.outcome, row.attempts, row.fence) == ("done", "reached", 1, 1)
    assert row.lease_holder is None and row.finished_at is not None
    assert (await _task(migrated_store, later_id)).state == "pending"

    assert await scheduler.run_due() == 0, "a finished task is never claimed again"
    clock.advance(timedelta(hours=1))
    assert await scheduler.run_due() == 1
    assert (await _task(migrated_store, later_id)).outcome == "reached"


async def test_kinds_without_a_handler_are_left_for_an_instance_that_has_one(
    migrated_store: Store, make_scheduler: Callable[..., Scheduler]
) -> None:
    async def sms(ctx: TaskContext) -> str:
        return "sent"

    scheduler = make_scheduler(handlers={"sms": sms})
    task_id = await scheduler.schedule("referral_deadline", {"referral_id": 3}, T0)
    assert await scheduler.run_due() == 0
    assert (await _task(migrated_store, task_id)).state == "pending"


async def test_retry_backs_off_exponentially_then_gives_up(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    calls = 0

    async def callback(ctx: TaskContext) -> str:
        nonlocal calls
        calls += 1
        raise RetryTask("no_answer")

    scheduler = make_scheduler(handlers={"callback": callback})
    task_id = await scheduler.schedule("callback", {"callback_id": 1}, T0, max_attempts=3)

    assert await scheduler.run_due() == 1
    row = await _task(migrated_store, task_id)
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "no_answer")
    assert _due(row) == T0 + timedelta(minutes=1)
    assert await scheduler.run_due() == 0, "not due before its backoff"

    clock.advance(timedelta(minutes=1))
    assert await scheduler.run_due() == 1
    row = await _task(migrated_store, task_id)
    assert _due(row) == clock.now + timedelta(minutes=2), "the second wait doubles"

    clock.advance(timedelta(minutes=2))
    assert await scheduler.run_due() == 1
    row = await _task(migrated_store, task_id)
    assert (row.state, row.outcome, row.attempts) == ("failed", "gave_up", 3)
    clock.advance(timedelta(days=1))
    assert await scheduler.run_due() == 0
    assert calls == 3


async def test_a_handler_crash_is_a_failed_attempt_recorded_without_its_message(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    async def callback(ctx: TaskContext) -> str:
        raise RuntimeError("could not reach 9876543210")

    scheduler = make_scheduler(handlers={"callback": callback})
    task_id = await scheduler.schedule("callback", {"callback_id": 1}, T0, max_attempts=1)
    await scheduler.run_due()
    row = await _task(migrated_store, task_id)
    assert (row.state, row.outcome, row.last_error) == ("failed", "gave_up", "RuntimeError")


async def test_permanent_failure_is_not_retried(
    migrated_store: Store, make_scheduler: Callable[..., Scheduler]
) -> None:
    async def callback(ctx: TaskContext) -> str:
        raise TaskFailed("consent_withdrawn", outcome="not_allowed")

    scheduler = make_scheduler(handlers={"callback": callback})
    task_id = await scheduler.schedule("callback", {"callback_id": 1}, T0, max_attempts=5)
    await scheduler.run_due()
    row = await _task(migrated_store, task_id)
    assert (row.state, row.outcome, row.attempts) == ("failed", "not_allowed", 1)


# -- leases and fences ----------------------------------------------------------------------


async def test_an_expired_lease_is_reclaimed_and_the_stale_worker_cannot_commit(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    release = {1: asyncio.Event(), 2: asyncio.Event()}
    runs: list[int] = []

    async def callback(ctx: TaskContext) -> str:
        runs.append(ctx.fence)
        # Each worker hangs (GC pause, network cut) until the test lets it go.
        await release[ctx.fence].wait()
        return f"claim {ctx.fence}"

    first = make_scheduler("app-1", handlers={"callback": callback})
    # The same instance id, as after a restart on the same host: only the fence tells
    # the two claims apart.
    second = make_scheduler("app-1", handlers={"callback": callback})
    task_id = await first.schedule("callback", {"callback_id": 1}, T0)

    [claim] = await first.claim(10)
    stale = asyncio.create_task(first.execute(claim))
    assert await second.claim(10) == [], "a held lease is not claimed"

    clock.advance(LEASE + timedelta(seconds=1))
    [reclaim] = await second.claim(10)
    fresh = asyncio.create_task(second.execute(reclaim))
    await asyncio.sleep(0.05)
    assert runs == [1, 2]

    release[1].set()
    await stale
    row = await _task(migrated_store, task_id)
    assert (row.state, row.outcome, row.fence) == ("running", None, 2), (
        "the stale worker's result is dropped while the new claim runs"
    )
    assert first.stats.lost == 1

    release[2].set()
    await fresh
    row = await _task(migrated_store, task_id)
    assert (row.state, row.outcome, row.fence, row.attempts) == ("done", "claim 2", 2, 2)


async def test_a_stale_worker_may_not_start_a_call(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    pbx = RecordingPbx()
    reclaimed = asyncio.Event()

    async def callback(ctx: TaskContext) -> str:
        if ctx.fence == 1:
            await reclaimed.wait()
        await pbx.originate(await ctx.before_call())
        return "reached"

    first = make_scheduler("app-1", handlers={"callback": callback})
    second = make_scheduler("app-2", handlers={"callback": callback})
    task_id = await first.schedule("callback", {"callback_id": 1}, T0)
    [claim] = await first.claim(10)
    # Its local deadline has not passed (a real pause would have spent it); only the
    # fenced 'dialling' write stands between the stale worker and her phone.
    stale = asyncio.create_task(first.execute(claim))
    clock.advance(LEASE + timedelta(seconds=1))
    assert await second.run_due() == 1
    reclaimed.set()
    await stale

    assert pbx.dialled() == {task_id: 1}
    assert pbx.originates == [(task_id, 2)]
    assert (await _task(migrated_store, task_id)).outcome == "reached"


async def test_a_worker_past_its_local_deadline_refuses_to_call(
    migrated_store: Store, make_scheduler: Callable[..., Scheduler]
) -> None:
    async def callback(ctx: TaskContext) -> str:
        ctx.deadline = 0.0  # as if the process had been frozen past its lease
        await ctx.before_call()
        return "reached"

    scheduler = make_scheduler(handlers={"callback": callback})
    task_id = await scheduler.schedule("callback", {"callback_id": 1}, T0)
    [claim] = await scheduler.claim(10)
    with pytest.raises(LeaseLost):
        await callback(claim)
    assert (await _task(migrated_store, task_id)).state == "running"


async def test_a_worker_lost_before_dialling_is_rerun_as_a_new_attempt(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    async def callback(ctx: TaskContext) -> str:
        return f"attempt {ctx.attempt}"

    dead = make_scheduler("app-1", handlers={"callback": callback})
    alive = make_scheduler("app-2", handlers={"callback": callback})
    task_id = await dead.schedule("callback", {"callback_id": 1}, T0, max_attempts=2)
    await dead.claim(10)  # ... and the process dies before running it
    clock.advance(LEASE)
    assert await alive.run_due() == 1
    row = await _task(migrated_store, task_id)
    assert (row.state, row.outcome) == ("done", "attempt 2")


async def test_a_task_that_keeps_killing_its_worker_ends_failed(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    async def callback(ctx: TaskContext) -> str:
        return "reached"

    task_id = await make_scheduler(handlers={"callback": callback}).schedule(
        "callback", {"callback_id": 1}, T0, max_attempts=2
    )
    for n in range(2):
        doomed = make_scheduler(f"doomed-{n}", handlers={"callback": callback})
        assert len(await doomed.claim(10)) == 1
        clock.advance(LEASE)
    assert await make_scheduler("app-9", handlers={"callback": callback}).run_due() == 1
    row = await _task(migrated_store, task_id)
    assert (row.state, row.outcome, row.last_error) == ("failed", "gave_up", "worker lost")


# -- settling a call whose worker died ---------------------------------------------------------


async def _strand_in_dialling(
    make_scheduler: Callable[..., Scheduler], clock: FakeClock, *, send: bool
) -> tuple[int, RecordingPbx]:
    """A worker marks the task dialling, maybe sends the Originate, and dies."""
    pbx = RecordingPbx()
    died = asyncio.Event()

    async def callback(ctx: TaskContext) -> str:
        variables = await ctx.before_call()
        if send:
            await pbx.originate(variables)
        died.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    doomed = make_scheduler("doomed", handlers={"callback": callback})
    task_id = await doomed.schedule("callback", {"callback_id": 1}, T0)
    [claim] = await doomed.claim(10)
    doomed._spawn(claim)
    await died.wait()
    await doomed.kill()
    clock.advance(LEASE)
    return task_id, pbx


@pytest.mark.parametrize("sent", [True, False])
async def test_a_stranded_call_is_settled_on_the_pbx_never_dialled_again(
    migrated_store: Store,
    clock: FakeClock,
    make_scheduler: Callable[..., Scheduler],
    sent: bool,
) -> None:
    task_id, pbx = await _strand_in_dialling(make_scheduler, clock, send=sent)
    assert (await _task(migrated_store, task_id)).state == "dialling"

    async def callback(ctx: TaskContext) -> str:
        await pbx.originate(await ctx.before_call())
        return "reached"

    survivor = make_scheduler("survivor", handlers={"callback": callback}, settler=pbx)
    assert await survivor.run_due() == 1
    row = await _task(migrated_store, task_id)
    if sent:
        assert (row.state, row.outcome, row.attempts) == ("done", "placed", 1)
    else:
        # Positive evidence it was never placed (and now never can be): a normal retry.
        assert (row.state, row.attempts, row.last_error) == ("pending", 1, "call not placed")
        clock.advance(timedelta(minutes=1))
        assert await survivor.run_due() == 1
        assert (await _task(migrated_store, task_id)).outcome == "reached"
    assert pbx.dialled() == {task_id: 1}


async def test_a_late_originate_from_the_dead_worker_is_refused_after_settlement(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    task_id, pbx = await _strand_in_dialling(make_scheduler, clock, send=False)
    survivor = make_scheduler("survivor", handlers={"callback": _never}, settler=pbx)
    assert await survivor.run_due() == 1
    # The dead worker's Originate was still in a socket buffer; it arrives now.
    await pbx.originate({TASK_VARIABLE: f"{task_id}:1"})
    assert pbx.refused == [(task_id, 1)] and pbx.originates == []


async def _never(ctx: TaskContext) -> str:
    raise AssertionError("must not run")


async def test_without_evidence_a_stranded_call_is_left_for_a_person(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    task_id, _pbx = await _strand_in_dialling(make_scheduler, clock, send=False)
    survivor = make_scheduler(
        "survivor", handlers={"callback": _never}, settler=ScriptedSettler(Settlement.UNKNOWN)
    )
    assert await survivor.run_due() == 1
    row = await _task(migrated_store, task_id)
    assert (row.state, row.outcome) == ("failed", "unconfirmed")
    assert "check by hand" in (row.last_error or "")
    clock.advance(timedelta(days=1))
    assert await survivor.run_due() == 0


async def test_a_live_call_is_waited_for_then_settled(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    task_id, pbx = await _strand_in_dialling(make_scheduler, clock, send=True)
    pbx.live.add(task_id)
    survivor = make_scheduler(
        "survivor", handlers={"callback": _never}, settler=pbx,
        live_call_recheck=timedelta(seconds=30),
    )
    assert await survivor.run_due() == 1
    row = await _task(migrated_store, task_id)
    assert (row.state, row.lease_holder) == ("dialling", None)
    assert await survivor.run_due() == 0, "not looked at again before the recheck"

    pbx.live.clear()  # she hung up
    clock.advance(timedelta(seconds=30))
    assert await survivor.run_due() == 1
    assert (await _task(migrated_store, task_id)).outcome == "placed"
    assert pbx.dialled() == {task_id: 1}


async def test_a_handler_error_after_dialling_goes_to_settlement_not_to_retry(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    pbx = RecordingPbx()

    async def callback(ctx: TaskContext) -> str:
        await pbx.originate(await ctx.before_call())
        raise ConnectionResetError  # AMI dropped before the OriginateResponse

    scheduler = make_scheduler(handlers={"callback": callback}, settler=pbx)
    task_id = await scheduler.schedule("callback", {"callback_id": 1}, T0, max_attempts=3)
    assert await scheduler.run_due() == 2, "released at once, then settled"
    row = await _task(migrated_store, task_id)
    assert (row.state, row.outcome, row.attempts) == ("done", "placed", 1)
    assert pbx.dialled() == {task_id: 1}


# -- scheduling -------------------------------------------------------------------------


async def test_dedupe_key_updates_the_pending_task_instead_of_adding_one(
    migrated_store: Store, clock: FakeClock, make_scheduler: Callable[..., Scheduler]
) -> None:
    async def callback(ctx: TaskContext) -> str:
        return "reached"

    scheduler = make_scheduler(
        handlers={"callback": callback}, dedupe_window=timedelta(hours=24)
    )
    first = await scheduler.schedule(
        "callback", {"callback_id": 1}, T0 + timedelta(minutes=30), dedupe_key="callback:1"
    )
    again = await scheduler.schedule(
        "callback", {"callback_id": 1, "reason": "pressed_again"}, T0, dedupe_key="callback:1"
    )
    assert again == first
    row = await _task(migrated_store, first)
    assert _due(row) == T0 and row.payload["reason"] == "pressed_again"

    assert await scheduler.run_due() == 1
    clock.advance(timedelta(hours=2))
    assert await scheduler.schedule(
        "callback", {"callback_id": 1}, clock.now, dedupe_key="callback:1"
    ) == first, "a repeat inside the window does not call her again"
    assert await scheduler.run_due() == 0

    clock.advance(timedelta(days=1))
    later = await scheduler.schedule(
        "callback", {"callback_id": 1}, clock.now, dedupe_key="callback:1"
    )
    assert later != first
    async with migrated_store.session() as session:
        count = await session.scalar(select(func.count()).select_from(ScheduledTask))
    assert count == 2


async def test_concurrent_schedules_with_one_key_make_one_task(
    migrated_store: Store, make_scheduler: Callable[..., Scheduler]
) -> None:
    schedulers = [make_scheduler(f"app-{n}", handlers={}) for n in range(2)]
    ids = await asyncio.gather(*(
        s.schedule("callback", {"callback_id": 5}, T0, dedupe_key="callback:5")
        for s in schedulers for _ in range(3)
    ))
    assert len(set(ids)) == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"number": "9876543210"},
        {"note": "call +91 98765 43210 after 6"},
        {"callback_id": 9876543210},
        {"callback_id": 1.5},
        {"nested": {"callback_id": 1}},
    ],
)
async def test_a_payload_never_carries_a_phone_number(
    migrated_store: Store, make_scheduler: Callable[..., Scheduler], payload: dict[str, object]
) -> None:
    scheduler = make_scheduler(handlers={})
    with pytest.raises(TaskPayloadError) as caught:
        await scheduler.schedule("callback", payload, T0)
    assert "98765" not in str(caught.value)
    async with migrated_store.session() as session:
        assert await session.scalar(select(func.count()).select_from(ScheduledTask)) == 0


async def test_cancel_stops_a_pending_task_only(
    migrated_store: Store, make_scheduler: Callable[..., Scheduler]
) -> None:
    async def callback(ctx: TaskContext) -> str:
        return "reached"

    scheduler = make_scheduler(handlers={"callback": callback})
    task_id = await scheduler.schedule("callback", {"callback_id": 1}, T0)
    assert await scheduler.cancel(task_id)
    assert await scheduler.run_due() == 0
    assert not await scheduler.cancel(task_id)
    assert (await _task(migrated_store, task_id)).state == "cancelled"


# -- outcome hooks ------------------------------------------------------------------------------


async def test_outcome_hooks_run_in_the_committing_transaction(
    migrated_store: Store, make_scheduler: Callable[..., Scheduler]
) -> None:
    reports: list[TaskReport] = []

    async def timeline(session: AsyncSession, report: TaskReport) -> None:
        # The hook sees the task's new state through the same transaction.
        row = await session.get(ScheduledTask, report.task_id)
        assert row is not None and row.state == report.state.value
        reports.append(report)

    async def broken(session: AsyncSession, report: TaskReport) -> None:
        raise KeyError("callback row missing")

    async def callback(ctx: TaskContext) -> str:
        return "reached"

    scheduler = make_scheduler(handlers={"callback": callback}, hooks=[broken, timeline])
    task_id = await scheduler.schedule("callback", {"callback_id": 1}, T0)
    await scheduler.run_due()

    assert [(r.task_id, r.state, r.outcome) for r in reports] == [
        (task_id, TaskState.DONE, "reached")
    ]
    row = await _task(migrated_store, task_id)
    assert (row.state, row.outcome) == ("done", "reached"), "a failing hook undoes nothing"
    assert row.last_error is not None and "KeyError" in row.last_error


# -- two instances, one killed, 1,000 calls ---------------------------------------------------


@pytest.fixture
async def shared_postgres(postgres_url: str) -> AsyncIterator[str]:
    url = await create_database(postgres_url)
    store = Store.from_url(url)
    await store.migrate()
    await store.close()
    try:
        yield url
    finally:
        await drop_database(url)


async def settled_tasks(
    url: str, crashed_id: int
) -> tuple[collections.Counter[tuple[str, str | None]], ScheduledTask | None]:
    """Wait until no task is left unfinished; then (state, outcome) counts and the task
    whose worker was killed between its Originate and its commit."""
    check = Store.from_url(url)
    try:
        while True:
            async with check.session() as session:
                unfinished = await session.scalar(
                    select(func.count()).select_from(ScheduledTask).where(
                        ScheduledTask.state.not_in(["done", "failed", "cancelled"])
                    )
                )
            if unfinished == 0:
                break
            await asyncio.sleep(0.1)
        async with check.session() as session:
            states = collections.Counter(
                (await session.execute(
                    select(ScheduledTask.state, ScheduledTask.outcome)
                )).all()
            )
            return states, await session.get(ScheduledTask, crashed_id)
    finally:
        await check.close()


@pytest.mark.timeout(90)
async def test_two_instances_run_1000_fake_calls_exactly_once_while_one_dies(
    shared_postgres: str,
) -> None:
    pbx = RecordingPbx()
    rng = random.Random(1090)
    total = 1000
    schedulers: dict[str, Scheduler] = {}
    stores: dict[str, Store] = {}
    crashed: list[int] = []
    kills: list[asyncio.Task[None]] = []

    def crash(name: str) -> None:
        # Die like a process: the scheduler writes nothing more, its connections close.
        async def die() -> None:
            await schedulers[name].kill()
            await stores[name].close()

        kills.append(asyncio.create_task(die()))

    def handler(name: str) -> Callable[[TaskContext], Awaitable[str]]:
        async def callback(ctx: TaskContext) -> str:
            variables = await ctx.before_call()
            await asyncio.sleep(rng.uniform(0, 0.002))  # Originate round trip
            await pbx.originate(variables)
            if name == "app-1" and not crashed and len(pbx.originates) >= total // 4:
                # The crash point: the Originate went out, its result is not committed.
                # Only app-1's own worker may stand here: a survivor's worker that
                # crashed another instance and then hung would hold its task for ever.
                crashed.append(ctx.task_id)
                crash("app-1")
                await asyncio.Event().wait()
            return "reached"

        return callback

    def start(name: str) -> Scheduler:
        stores[name] = Store.from_url(shared_postgres)
        scheduler = Scheduler(
            stores[name], name, {"callback": handler(name)},
            settler=pbx, lease=timedelta(seconds=2), lease_margin=timedelta(seconds=0.5),
            backoff=Backoff(base=timedelta(milliseconds=200)),
            concurrency=8, poll_interval=0.05,
        )
        schedulers[name] = scheduler
        scheduler.start()
        return scheduler

    planner = Scheduler(Store.from_url(shared_postgres), "planner", {})
    now = datetime.now(UTC)
    ids = [
        await planner.schedule("callback", {"callback_id": n}, now, max_attempts=5)
        for n in range(total)
    ]
    await planner._store.close()

    start("app-1")
    start("app-2")
    async with asyncio.timeout(60):
        while not crashed:  # noqa: ASYNC110 - the state lives in the schedulers' tasks
            await asyncio.sleep(0.01)
        await asyncio.gather(*kills)
        # A restarted instance, killed in turn at an arbitrary moment (mid-claim, mid-commit).
        start("app-3")
        while len(pbx.originates) < total // 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        crash("app-3")
        await asyncio.gather(*kills)
        states, crashed_row = await settled_tasks(shared_postgres, crashed[0])
    await schedulers["app-2"].stop()
    await stores["app-2"].close()

    dialled = pbx.dialled()
    assert sorted(dialled) == sorted(ids), "every caller was dialled"
    assert max(dialled.values()) == 1, "no caller was dialled twice"
    assert sum(n for (state, _), n in states.items() if state == "done") == total
    assert crashed_row is not None and crashed_row.outcome == "placed"
    placed = sum(s.stats.by_settlement.get("placed", 0) for s in schedulers.values())
    assert placed >= 1, "the crash after the Originate was settled, not re-dialled"


# -- the same on the simulated PBX, over real AMI/TCP ---------------------------------------


@pytest.mark.timeout(120)
async def test_two_instances_place_1000_callbacks_on_the_pbx_exactly_once_while_one_dies(
    shared_postgres: str,
) -> None:
    """Counted on the simulator: its Originate log, and the Dials to her number."""
    from callcenter.ami import AMIClient
    from callcenter.ami.client import Backoff as AmiBackoff
    from callcenter.followups.dialler import (
        NOT_CALLED,
        AmiCallSettler,
        AmiDialler,
        OutboundCall,
    )
    from callcenter.pbx.operations import PbxOperations
    from callcenter.sim.clock import Clock
    from callcenter.sim.helpline import OUTBOUND_TRUNK, SimAgent, helpline_config
    from callcenter.sim.server import SimPBX

    total = 1000
    agents = [
        SimAgent(f"agent{n}", f"Agent {n}", answer_after=0.5, hangup_after=20.0)
        for n in range(40)
    ]
    sim = SimPBX(helpline_config(agents, emergency_answers=True), clock=Clock(100.0))
    await sim.start(port=0)
    core = sim.core
    # Who was really dialled: the Dials of the callback's second half to the trunk.
    dialled: collections.Counter[int] = collections.Counter()
    refused: list[str] = []

    def watch(name: str, pairs: list[tuple[str, str]]) -> None:
        headers = dict(pairs)
        if name == "DialBegin" and headers.get("DestChannel", "").startswith(
            f"PJSIP/{OUTBOUND_TRUNK}"
        ):
            chan = core.by_uniqueid.get(headers.get("Uniqueid", ""))
            assert chan is not None
            dialled[int(chan.variables["WPL_TASK"])] += 1
        elif name == "VarSet" and headers.get("Variable") == "WPL_STALE":
            refused.append(headers.get("Value", ""))

    core.listeners.append(watch)
    user = sim.config.users[0]
    clients: dict[str, AMIClient] = {}
    schedulers: dict[str, Scheduler] = {}
    stores: dict[str, Store] = {}
    crashed: list[int] = []
    kills: list[asyncio.Task[None]] = []
    outcomes: collections.Counter[str] = collections.Counter()

    def crash(name: str) -> None:
        async def die() -> None:
            await schedulers[name].kill()
            await stores[name].close()
            await clients[name].close()

        kills.append(asyncio.create_task(die()))

    async def connect(name: str) -> AMIClient:
        client = AMIClient(
            "127.0.0.1", sim.port, user.username, user.secret, "md5",
            ping_interval=None, backoff=AmiBackoff(initial=0.01, maximum=0.1),
            name=name,
        )
        await client.connect()
        clients[name] = client
        return client

    setup = PbxOperations(await connect("setup"))
    for agent in agents:
        await setup.add_member("wpl-callback", f"PJSIP/{agent.endpoint}",
                               member_name=agent.endpoint)
    await clients.pop("setup").close()  # one reader fewer of every event

    def start(name: str, client: AMIClient) -> None:
        ops = PbxOperations(client)
        dialler = AmiDialler(client, ops=ops)

        async def callback(ctx: TaskContext) -> str:
            call = OutboundCall(
                destination=f"98{ctx.task_id:08d}", token=f"T{ctx.task_id}",
                callback_id=ctx.task_id, queue_wait_s=60,
            )
            if name == "app-1" and not crashed and len(core.originate_log) >= total // 4:
                # The crash point: the Originate is on the wire, its result not committed.
                crashed.append(ctx.task_id)
                placing = asyncio.create_task(dialler.place(ctx, call))
                while not any(  # noqa: ASYNC110 - the state lives in the simulator
                    r.variables.get("WPL_TASK") == str(ctx.task_id) for r in core.originate_log
                ):
                    await asyncio.sleep(0.001)
                crash(name)
                await placing
            result = await dialler.place(ctx, call)
            outcomes[result.value] += 1
            if result in NOT_CALLED:
                raise RetryTask(result.value)
            return result.value

        stores[name] = Store.from_url(shared_postgres)
        scheduler = Scheduler(
            stores[name], name, {"callback": callback}, settler=AmiCallSettler(ops),
            lease=timedelta(seconds=2), lease_margin=timedelta(seconds=0.5),
            live_call_recheck=timedelta(seconds=0.3),
            backoff=Backoff(base=timedelta(milliseconds=200)),
            concurrency=12, poll_interval=0.05,
        )
        schedulers[name] = scheduler
        scheduler.start()

    planner = Scheduler(Store.from_url(shared_postgres), "planner", {})
    now = datetime.now(UTC)
    ids = [
        await planner.schedule("callback", {"callback_id": n}, now, max_attempts=5)
        for n in range(total)
    ]
    await planner._store.close()

    try:
        start("app-1", await connect("app-1"))
        start("app-2", await connect("app-2"))
        async with asyncio.timeout(90):
            while not crashed:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await asyncio.gather(*kills)
            start("app-3", await connect("app-3"))
            while len(core.originate_log) < total // 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            crash("app-3")
            await asyncio.gather(*kills)
            states, crashed_row = await settled_tasks(shared_postgres, crashed[0])
    finally:
        for name, scheduler in schedulers.items():
            if name == "app-2":
                await scheduler.stop()
                await stores[name].close()
        for client in clients.values():
            await client.close()
        await sim.stop()

    originated = collections.Counter(int(r.variables["WPL_TASK"]) for r in core.originate_log)
    assert sorted(originated) == sorted(ids), "every task reached the PBX"
    missing = sorted(set(ids) - set(dialled))
    assert missing == [], f"every woman was dialled; outcomes {states}"
    assert max(dialled.values()) == 1, "none was dialled twice"
    # A second Originate of a task is a retry after no agent came (she was not dialled
    # then) or a stale one the dialplan refused before it rang anyone.
    retried = outcomes["agent_timeout"] + outcomes["not_dialled"]
    assert sum(originated.values()) - total == retried + len(refused)
    assert sum(n for (state, _), n in states.items() if state == "done") == total, states
    assert crashed_row is not None and crashed_row.outcome == "placed"
    placed = sum(s.stats.by_settlement.get("placed", 0) for s in schedulers.values())
    assert placed >= 1, "the crash after the Originate was settled, not re-dialled"
