"""The durable, exactly-once task scheduler behind callbacks and follow-up calls.

Every task is a row of ``scheduled_task``; every instance of the backend runs a
:class:`Scheduler` on the same database. A task is run by whoever *claims* it:

* PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks due rows no other instance is
  claiming right now, and the same short transaction writes the claim.
* SQLite (one instance, the embedded default): one conditional ``UPDATE ... WHERE id IN
  (...) AND <still claimable>``, which is atomic under SQLite's single write lock.

A claim writes ``lease_holder``, ``lease_expires_at`` and ``fence = fence + 1``. Every later
write of that claim is ``UPDATE ... WHERE id = ? AND fence = ?``: a worker that lost its
lease (paused, cut off, presumed dead) and wakes up finds zero rows and writes nothing.
Long handlers renew the lease; a lease that expires is reclaimed by any instance.

Calls are the side effect that must never happen twice: she may be in danger and a second
ring can be one too many (or reach the person she hides from). A handler that places a call
therefore does it in two phases:

1. :meth:`TaskContext.before_call` commits ``state = 'dialling'`` (fenced) and only then
   returns the channel variables, ``WPL_TASK_ID=<task id>:<fence>``, to send with the
   Originate;
2. after the OriginateResponse the handler returns, and the outcome is committed (fenced).

A task found ``dialling`` with an expired lease lost its worker somewhere between 1 and 2:
the Originate may or may not have been sent. It is never simply re-run; it is *settled* by a
:class:`CallSettler` that first fences the task off on the PBX (so a stale Originate still
in flight cannot dial her any more) and then looks for the call:

* ``LIVE``: a channel carrying the task's ``WPL_TASK_ID`` exists: the call is happening;
  look again later (the task stays ``dialling``, unheld, with a short lease).
* ``PLACED``: the call was placed and has ended: the task is done.
* ``NOT_PLACED``: positive evidence that no call for this task was placed and none can be
  any more: the attempt is retried like any failed one.
* ``UNKNOWN``: no such evidence either way: the task is FAILED with outcome
  ``unconfirmed`` for a person to check. A missed callback is visible on the supervisors'
  list and can be redone by hand; a second call cannot be undone.

Without a settler every stranded ``dialling`` task ends ``unconfirmed``; that is the
conservative default, not a loss: it is recorded, never silently dropped.

Times in the database come from the injected clock (``lease_expires_at`` is compared with
another instance's clock, so instances need NTP); the fence, not the clock, is what keeps a
stale worker from committing.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.store import Store

from .errors import LeaseLost, RetryTask, TaskFailed, TaskPayloadError, UnknownTaskKind
from .models import (
    DEDUPE_KEY_MAX,
    ERROR_MAX,
    FINAL_STATES,
    HOLDER_MAX,
    KIND_MAX,
    OUTCOME_MAX,
    ScheduledTask,
    TaskState,
    aware,
)

log = logging.getLogger(__name__)

#: The channel variable every call a task places carries: ``<task id>:<fence>``.
TASK_VARIABLE = "WPL_TASK_ID"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Settlement(enum.StrEnum):
    LIVE = "live"
    PLACED = "placed"
    NOT_PLACED = "not_placed"
    UNKNOWN = "unknown"


class CallSettler(Protocol):
    """Finds out on the PBX what became of a task's call after its worker died.

    ``settle(task_id, fence)`` is called with the fence of the settling claim, which is
    larger than the fence of every call the task may have placed. It must first make any
    call still to come from an older fence harmless, then answer; it may answer
    ``NOT_PLACED`` only when it knows that no call of this task was placed nor can be.
    """

    async def settle(self, task_id: int, fence: int) -> Settlement: ...


@dataclass(frozen=True, slots=True)
class TaskReport:
    """What happened to a task, handed to outcome hooks inside the committing transaction."""

    task_id: int
    kind: str
    payload: Mapping[str, Any]
    case_id: int | None
    call_record_id: int | None
    state: TaskState
    outcome: str | None
    attempts: int
    error: str | None
    #: True when the outcome was established by settlement, not by the worker that dialled.
    settled: bool = False


#: Records an outcome elsewhere (callback record, case timeline) in the same transaction
#: as the fenced task update, so the two never disagree.
OutcomeHook = Callable[[AsyncSession, TaskReport], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential: ``base * factor ** (attempt - 1)``, at most ``cap``."""

    base: timedelta = timedelta(minutes=1)
    factor: float = 2.0
    cap: timedelta = timedelta(hours=1)

    def delay(self, attempt: int) -> timedelta:
        seconds = self.base.total_seconds() * self.factor ** max(attempt - 1, 0)
        return min(timedelta(seconds=seconds), self.cap)


# -- payload --------------------------------------------------------------------------

_MAX_ROW_ID = 10**9
# Seven digits in a row, ignoring the separators people write numbers with.
_DIGIT_RUN = re.compile(r"\d(?:[\s().+-]*\d){6}")


def _check_task(kind: str, max_attempts: int) -> None:
    if not kind or len(kind) > KIND_MAX:
        raise ValueError("task kind must be 1..64 characters")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")


def check_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A payload as stored: flat, string keys, row ids and short codes, nothing number-like.

    A phone number must never reach this table, so anything that could be one (a long
    integer, a string with seven digits in a row) is refused, naming the key only.
    """
    checked: dict[str, Any] = {}
    for key, value in payload.items():
        if not isinstance(key, str) or not key:
            raise TaskPayloadError("payload keys must be non-empty strings")
        if value is None or isinstance(value, bool):
            pass
        elif isinstance(value, int):
            if not 0 <= value < _MAX_ROW_ID:
                raise TaskPayloadError(f"payload {key!r}: not a row id")
        elif isinstance(value, str):
            if _DIGIT_RUN.search(value):
                raise TaskPayloadError(f"payload {key!r}: looks like it holds a number")
        else:
            raise TaskPayloadError(f"payload {key!r}: only row ids and short codes")
        checked[key] = value
    return checked


# -- the running task ---------------------------------------------------------------


class TaskContext:
    """One claim of one task, as its handler sees it."""

    def __init__(
        self,
        scheduler: Scheduler,
        row: ScheduledTask,
        deadline: float,
    ) -> None:
        self._scheduler = scheduler
        self.task_id: int = row.id
        self.kind: str = row.kind
        self.payload: Mapping[str, Any] = dict(row.payload)
        self.case_id: int | None = row.case_id
        self.call_record_id: int | None = row.call_record_id
        self.attempt: int = row.attempts
        self.max_attempts: int = row.max_attempts
        self.fence: int = row.fence
        #: ``running`` for a (re)run, ``dialling`` for a settlement of a stranded call.
        self.claimed_state = TaskState(row.state)
        #: Set once :meth:`before_call` committed: the outcome may now be unknown.
        self.dialling = False
        #: Set when a renewal found the claim taken over.
        self.lost = False
        # Monotonic time after which this worker no longer believes it holds the lease;
        # counted from before the claim was sent, minus a margin, like PbxLease.
        self.deadline = deadline

    @property
    def call_tag(self) -> str:
        return f"{self.task_id}:{self.fence}"

    @property
    def held(self) -> bool:
        return not self.lost and time.monotonic() < self.deadline

    async def before_call(self) -> dict[str, str]:
        """Commit ``dialling``; returns the variables the Originate must carry.

        Raises :class:`LeaseLost` (and nothing is to be sent) when this claim is no longer
        the task's current one.
        """
        if not self.held:
            raise LeaseLost(f"task {self.task_id}: lease no longer held")
        await self._scheduler._mark_dialling(self)
        self.dialling = True
        return {TASK_VARIABLE: self.call_tag}

    async def renew(self) -> None:
        """Extend the lease now (the scheduler also does it every third of the lease)."""
        await self._scheduler._renew(self)


Handler = Callable[[TaskContext], Awaitable[str | None]]


@dataclass(slots=True)
class _Running:
    context: TaskContext | None
    task: asyncio.Task[None]
    handler_task: asyncio.Task[str | None] | None = None


@dataclass(slots=True)
class SchedulerStats:
    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    settled: int = 0
    lost: int = 0
    by_settlement: dict[str, int] = field(default_factory=dict)


_LIVE_STATES = (TaskState.RUNNING.value, TaskState.DIALLING.value)


class Scheduler:
    """Claims due tasks from the database and runs them, exactly once across instances."""

    def __init__(
        self,
        store: Store,
        instance_id: str,
        handlers: Mapping[str, Handler],
        clock: Clock = utc_now,
        *,
        settler: CallSettler | None = None,
        hooks: Sequence[OutcomeHook] = (),
        backoff: Backoff | None = None,
        lease: timedelta = timedelta(seconds=60),
        lease_margin: timedelta = timedelta(seconds=5),
        live_call_recheck: timedelta = timedelta(seconds=30),
        dedupe_window: timedelta = timedelta(hours=24),
        concurrency: int = 16,
        poll_interval: float = 1.0,
    ) -> None:
        if len(instance_id) > HOLDER_MAX:
            raise ValueError(f"instance id longer than {HOLDER_MAX} characters")
        if lease_margin >= lease:
            raise ValueError("the lease margin must be shorter than the lease")
        self._store = store
        self.instance_id = instance_id
        self._handlers = dict(handlers)
        self._clock = clock
        self._settler = settler
        self._hooks = tuple(hooks)
        self._backoff = backoff or Backoff()
        self._lease = lease
        self._margin = lease_margin
        self._recheck = live_call_recheck
        self._dedupe_window = dedupe_window
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._postgres = store.engine.dialect.name == "postgresql"
        self._running: dict[int, _Running] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self.stats = SchedulerStats()

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    # -- scheduling ---------------------------------------------------------------------

    async def schedule(
        self,
        kind: str,
        payload: Mapping[str, Any],
        due_at: datetime,
        max_attempts: int = 3,
        dedupe_key: str | None = None,
        *,
        case_id: int | None = None,
        call_record_id: int | None = None,
    ) -> int:
        """Store a task; returns its id.

        With ``dedupe_key``, a task with that key that is still to run (or finished less
        than ``dedupe_window`` ago) is returned instead of a second one; a pending one gets
        the new due time, payload and maximum.
        """
        _check_task(kind, max_attempts)
        if dedupe_key is not None and not 0 < len(dedupe_key) <= DEDUPE_KEY_MAX:
            raise ValueError("dedupe_key must be 1..128 characters")
        body = check_payload(payload)
        due = due_at.astimezone(UTC)
        # Two instances may insert the same key at once; the loser finds the winner's row.
        for _ in range(3):
            try:
                async with self._store.transaction() as session:
                    if dedupe_key is not None:
                        existing = await self._dedupe(session, dedupe_key, body, due, max_attempts)
                        if existing is not None:
                            return existing
                    row = self._pending_row(kind, body, due, max_attempts, case_id,
                                            call_record_id, dedupe_key)
                    session.add(row)
                    await session.flush()
                    task_id = row.id
            except IntegrityError:
                if dedupe_key is None:
                    raise
                continue
            self._wake.set()
            return task_id
        raise RuntimeError("could not store the task: its dedupe key kept changing hands")

    async def add(
        self,
        session: AsyncSession,
        kind: str,
        payload: Mapping[str, Any],
        due_at: datetime,
        max_attempts: int = 3,
        *,
        case_id: int | None = None,
        call_record_id: int | None = None,
    ) -> int:
        """Store a task inside the caller's transaction; returns its id.

        For a domain row and its task that must appear together or not at all (a callback
        and the task that places it). Call :meth:`wake` after the commit.
        """
        _check_task(kind, max_attempts)
        row = self._pending_row(kind, check_payload(payload), due_at.astimezone(UTC),
                                max_attempts, case_id, call_record_id)
        session.add(row)
        await session.flush()
        return row.id

    def _pending_row(
        self,
        kind: str,
        payload: dict[str, Any],
        due: datetime,
        max_attempts: int,
        case_id: int | None,
        call_record_id: int | None,
        dedupe_key: str | None = None,
    ) -> ScheduledTask:
        now = self._now()
        return ScheduledTask(
            kind=kind, payload=payload, dedupe_key=dedupe_key, case_id=case_id,
            call_record_id=call_record_id, due_at=due, state=TaskState.PENDING.value,
            attempts=0, max_attempts=max_attempts, fence=0, created_at=now, updated_at=now,
        )

    async def cancel_in(self, session: AsyncSession, task_id: int) -> bool:
        """:meth:`cancel` inside the caller's transaction."""
        now = self._now()
        result = await session.execute(
            update(ScheduledTask)
            .where(ScheduledTask.id == task_id, ScheduledTask.state == TaskState.PENDING)
            .values(state=TaskState.CANCELLED.value, outcome="cancelled",
                    updated_at=now, finished_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _dedupe(
        self,
        session: AsyncSession,
        key: str,
        payload: dict[str, Any],
        due: datetime,
        max_attempts: int,
    ) -> int | None:
        row = await session.scalar(
            select(ScheduledTask).where(ScheduledTask.dedupe_key == key).with_for_update()
        )
        if row is None:
            return None
        now = self._now()
        if row.state in FINAL_STATES:
            finished = aware(row.finished_at or row.updated_at)
            if now - finished < self._dedupe_window:
                return row.id
            # An old finished task gives its key up to the new intent.
            row.dedupe_key = None
            await session.flush()
            return None
        if row.state == TaskState.PENDING:
            row.payload = payload
            row.due_at = due
            row.max_attempts = max(max_attempts, row.attempts + 1)
            row.updated_at = now
        return row.id

    async def cancel(self, task_id: int) -> bool:
        """Cancel a task that has not started; False when it is running or finished.

        A running task is not interrupted: its call may already be ringing.
        """
        async with self._store.transaction() as session:
            return await self.cancel_in(session, task_id)

    async def get(self, task_id: int) -> ScheduledTask | None:
        async with self._store.session() as session:
            return await session.get(ScheduledTask, task_id)

    # -- claiming -----------------------------------------------------------------------

    def _claimable(self, now: datetime) -> ColumnElement[bool]:
        kinds = sorted(self._handlers)
        return and_(
            ScheduledTask.kind.in_(kinds),
            or_(
                and_(ScheduledTask.state == TaskState.PENDING, ScheduledTask.due_at <= now),
                and_(
                    ScheduledTask.state.in_(_LIVE_STATES),
                    ScheduledTask.lease_expires_at <= now,
                ),
            ),
        )

    async def claim(self, limit: int) -> list[TaskContext]:
        """Claim up to ``limit`` due tasks for this instance (committed before returning)."""
        if limit <= 0 or not self._handlers:
            return []
        sent = time.monotonic()
        now = self._now()
        claimable = self._claimable(now)
        pick = select(ScheduledTask.id).where(claimable).order_by(ScheduledTask.due_at)
        pick = pick.limit(limit)
        dialling = ScheduledTask.state == TaskState.DIALLING
        claim = (
            update(ScheduledTask)
            .values(
                lease_holder=self.instance_id,
                lease_expires_at=now + self._lease,
                fence=ScheduledTask.fence + 1,
                # Settling a call is not an attempt; re-running after a lost worker is.
                attempts=case(
                    (dialling, ScheduledTask.attempts), else_=ScheduledTask.attempts + 1
                ),
                state=case((dialling, TaskState.DIALLING.value), else_=TaskState.RUNNING.value),
                updated_at=now,
            )
            .returning(ScheduledTask)
            .execution_options(synchronize_session=False)
        )
        if self._postgres:
            async with self._store.transaction() as session:
                ids = list(await session.scalars(pick.with_for_update(skip_locked=True)))
                if not ids:
                    return []
                rows = list(await session.scalars(claim.where(ScheduledTask.id.in_(ids))))
        else:
            # The read runs in its own transaction: upgrading a WAL read snapshot to a write
            # fails at once if another writer committed meanwhile. The UPDATE re-checks.
            async with self._store.session() as session:
                ids = list(await session.scalars(pick))
            if not ids:
                return []
            async with self._store.transaction() as session:
                rows = list(
                    await session.scalars(claim.where(ScheduledTask.id.in_(ids), claimable))
                )
        deadline = sent + (self._lease - self._margin).total_seconds()
        self.stats.claimed += len(rows)
        return [TaskContext(self, row, deadline) for row in rows]

    # -- fenced writes --------------------------------------------------------------------

    def _fenced(self, ctx: TaskContext) -> Any:
        return update(ScheduledTask).where(
            ScheduledTask.id == ctx.task_id,
            ScheduledTask.fence == ctx.fence,
            ScheduledTask.lease_holder == self.instance_id,
            ScheduledTask.state.in_(_LIVE_STATES),
        ).execution_options(synchronize_session=False)

    async def _mark_dialling(self, ctx: TaskContext) -> None:
        now = self._now()
        async with self._store.transaction() as session:
            result = await session.execute(
                self._fenced(ctx)
                .where(
                    ScheduledTask.state == TaskState.RUNNING,
                    ScheduledTask.lease_expires_at > now,
                )
                .values(state=TaskState.DIALLING.value, updated_at=now)
            )
        if not result.rowcount:  # type: ignore[attr-defined]
            ctx.lost = True
            raise LeaseLost(f"task {ctx.task_id}: claim {ctx.fence} was taken over")

    async def _renew(self, ctx: TaskContext) -> bool:
        sent = time.monotonic()
        now = self._now()
        async with self._store.transaction() as session:
            result = await session.execute(
                self._fenced(ctx).values(lease_expires_at=now + self._lease)
            )
        if result.rowcount:  # type: ignore[attr-defined]
            ctx.deadline = sent + (self._lease - self._margin).total_seconds()
            return True
        ctx.lost = True
        return False

    async def _commit(
        self,
        ctx: TaskContext,
        state: TaskState,
        *,
        outcome: str | None = None,
        error: str | None = None,
        due_at: datetime | None = None,
        settled: bool = False,
        lease_expires_at: datetime | None = None,
    ) -> bool:
        """The fenced write that ends a claim; hooks run in the same transaction."""
        now = self._now()
        values: dict[str, Any] = {
            "state": state.value,
            "lease_holder": None,
            "lease_expires_at": lease_expires_at,
            "updated_at": now,
        }
        if outcome is not None:
            values["outcome"] = outcome[:OUTCOME_MAX]
        if error is not None:
            values["last_error"] = error[:ERROR_MAX]
        if due_at is not None:
            values["due_at"] = due_at
        if state in FINAL_STATES:
            values["finished_at"] = now
        async with self._store.transaction() as session:
            result = await session.execute(self._fenced(ctx).values(**values))
            if not result.rowcount:  # type: ignore[attr-defined]
                ctx.lost = True
                self.stats.lost += 1
                log.warning(
                    "task %s: claim %s was taken over; its result is dropped",
                    ctx.task_id, ctx.fence,
                )
                return False
            if self._hooks and (state in FINAL_STATES or state == TaskState.PENDING):
                report = TaskReport(
                    task_id=ctx.task_id, kind=ctx.kind, payload=ctx.payload,
                    case_id=ctx.case_id, call_record_id=ctx.call_record_id, state=state,
                    outcome=outcome, attempts=ctx.attempt, error=error, settled=settled,
                )
                await self._run_hooks(session, ctx, report)
        return True

    async def _run_hooks(self, session: AsyncSession, ctx: TaskContext, report: TaskReport) -> None:
        for hook in self._hooks:
            # A failing hook must not undo the task's outcome: the call was made. It loses
            # only its own writes (savepoint), and the task says so.
            try:
                async with session.begin_nested():
                    await hook(session, report)
            except Exception as exc:  # noqa: BLE001 - any hook failure is recorded the same way
                name = getattr(hook, "__qualname__", type(hook).__name__)
                log.exception("task %s: outcome hook %s failed", ctx.task_id, name)
                await session.execute(
                    update(ScheduledTask)
                    .where(ScheduledTask.id == ctx.task_id)
                    .values(last_error=f"outcome hook {name}: {type(exc).__name__}"[:ERROR_MAX])
                    .execution_options(synchronize_session=False)
                )

    async def _retry_or_fail(
        self,
        ctx: TaskContext,
        reason: str,
        delay: timedelta | None = None,
        *,
        settled: bool = False,
    ) -> None:
        if ctx.attempt >= ctx.max_attempts:
            if await self._commit(
                ctx, TaskState.FAILED, outcome="gave_up", error=reason, settled=settled
            ):
                self.stats.failed += 1
                log.info("task %s (%s) gave up after %s attempts", ctx.task_id, ctx.kind,
                         ctx.attempt)
            return
        wait = delay if delay is not None else self._backoff.delay(ctx.attempt)
        if await self._commit(
            ctx, TaskState.PENDING, error=reason, due_at=self._now() + wait, settled=settled
        ):
            self.stats.retried += 1

    # -- running ----------------------------------------------------------------------------

    async def execute(self, ctx: TaskContext) -> None:
        """Run one claimed task to the end of its claim."""
        if ctx.claimed_state is TaskState.DIALLING:
            await self._settle(ctx)
            return
        if ctx.attempt > ctx.max_attempts:
            # Its last attempt's worker died: that counted, and there is none left.
            if await self._commit(ctx, TaskState.FAILED, outcome="gave_up",
                                  error="worker lost"):
                self.stats.failed += 1
            return
        handler = self._handlers.get(ctx.kind)
        if handler is None:  # claim() only picks known kinds; a guard for direct callers
            raise UnknownTaskKind(ctx.kind)
        handler_task = asyncio.create_task(handler(ctx), name=f"task-{ctx.task_id}")
        running = self._running.get(ctx.task_id)
        if running is not None:
            running.handler_task = handler_task
        keeper = asyncio.create_task(self._keep_lease(ctx, handler_task))
        try:
            outcome = await handler_task
        except asyncio.CancelledError:
            if ctx.lost and not _cancelling():
                log.warning("task %s: lease lost while running; stopped", ctx.task_id)
                self.stats.lost += 1
                return
            handler_task.cancel()
            raise
        except LeaseLost:
            self.stats.lost += 1
            log.warning("task %s: claim %s taken over before the call", ctx.task_id, ctx.fence)
        except RetryTask as exc:
            await self._retry_or_fail(ctx, exc.reason, exc.delay)
        except TaskFailed as exc:
            if await self._commit(ctx, TaskState.FAILED, outcome=exc.outcome, error=exc.reason):
                self.stats.failed += 1
        except Exception as exc:  # noqa: BLE001 - a handler's bug is one failed attempt
            reason = type(exc).__name__
            log.warning("task %s (%s) attempt %s failed: %s", ctx.task_id, ctx.kind,
                        ctx.attempt, reason)
            if ctx.dialling:
                # The Originate may have gone out: only settlement may decide. Give the
                # lease up now so that happens soon, here or on another instance.
                await self._commit(ctx, TaskState.DIALLING, error=reason,
                                   lease_expires_at=self._now())
            else:
                await self._retry_or_fail(ctx, reason)
        else:
            if await self._commit(ctx, TaskState.DONE, outcome=outcome or "done"):
                self.stats.done += 1
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self, ctx: TaskContext, handler_task: asyncio.Task[Any]) -> None:
        interval = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                held = await self._renew(ctx)
            except Exception as exc:  # noqa: BLE001 - database away: the deadline decides
                log.warning("task %s: lease renewal failed: %s", ctx.task_id, type(exc).__name__)
                continue
            if not held:
                handler_task.cancel()
                return

    async def _settle(self, ctx: TaskContext) -> None:
        self.stats.settled += 1
        if self._settler is None:
            verdict = Settlement.UNKNOWN
        else:
            try:
                verdict = await self._settler.settle(ctx.task_id, ctx.fence)
            except Exception as exc:  # noqa: BLE001 - PBX away: the lease runs out, try again
                log.warning("task %s: settlement failed: %s", ctx.task_id, type(exc).__name__)
                return
        self.stats.by_settlement[verdict.value] = self.stats.by_settlement.get(verdict.value, 0) + 1
        log.info("task %s (%s): call settled as %s", ctx.task_id, ctx.kind, verdict.value)
        if verdict is Settlement.LIVE:
            await self._commit(
                ctx, TaskState.DIALLING, lease_expires_at=self._now() + self._recheck
            )
        elif verdict is Settlement.PLACED:
            if await self._commit(ctx, TaskState.DONE, outcome="placed", settled=True):
                self.stats.done += 1
        elif verdict is Settlement.NOT_PLACED:
            await self._retry_or_fail(ctx, "call not placed", settled=True)
        elif await self._commit(
            ctx, TaskState.FAILED, outcome="unconfirmed", settled=True,
            error="worker lost after dialling; the call may have been placed: check by hand",
        ):
            self.stats.failed += 1

    # -- the worker loop ------------------------------------------------------------------

    def start(self) -> None:
        if self._loop_task is not None:
            return
        self._stopping = False
        self._loop_task = asyncio.create_task(self._loop(), name=f"scheduler-{self.instance_id}")

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def run_due(self) -> int:
        """Claim and run what is due now, to completion; returns how many claims ran.

        For tests and one-shot use (``callcenter followups run``); the loop does the same
        continuously.
        """
        total = 0
        while True:
            claimed = await self.claim(self._concurrency)
            if not claimed:
                return total
            total += len(claimed)
            for ctx in claimed:
                self._spawn(ctx)
            await asyncio.gather(*(r.task for r in list(self._running.values())))

    def _spawn(self, ctx: TaskContext) -> None:
        task = asyncio.create_task(self._guarded(ctx), name=f"claim-{ctx.task_id}")
        self._running[ctx.task_id] = _Running(ctx, task)
        task.add_done_callback(lambda _t, task_id=ctx.task_id: self._finished(task_id))

    def _finished(self, task_id: int) -> None:
        self._running.pop(task_id, None)
        self._wake.set()

    async def _guarded(self, ctx: TaskContext) -> None:
        try:
            await self.execute(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. the database went away mid-commit
            # The claim's lease runs out and another claim retries or settles the task.
            log.warning("task %s: claim %s abandoned: %s", ctx.task_id, ctx.fence,
                        type(exc).__name__)

    async def _loop(self) -> None:
        while not self._stopping:
            free = self._concurrency - len(self._running)
            claimed: list[TaskContext] = []
            if free > 0:
                try:
                    claimed = await self.claim(free)
                except Exception as exc:  # noqa: BLE001 - database away: try again later
                    log.warning("scheduler %s: claim failed: %s", self.instance_id,
                                type(exc).__name__)
            for ctx in claimed:
                self._spawn(ctx)
            if claimed and len(self._running) < self._concurrency:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def stop(self, *, drain_timeout: float = 10.0) -> None:
        """Stop claiming, let running tasks finish (up to ``drain_timeout``), then cancel.

        A cancelled claim writes nothing: its lease runs out and another instance retries
        or settles it, exactly as after a crash.
        """
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        pending = [r.task for r in self._running.values()]
        if pending:
            _done, not_done = await asyncio.wait(pending, timeout=drain_timeout)
            for task in not_done:
                task.cancel()
            await asyncio.gather(*not_done, return_exceptions=True)

    async def kill(self) -> None:
        """Die on the spot, like a crashed process: no further database write."""
        self._stopping = True
        tasks = [r.task for r in self._running.values()]
        tasks += [r.handler_task for r in self._running.values() if r.handler_task is not None]
        if self._loop_task is not None:
            tasks.append(self._loop_task)
            self._loop_task = None
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in tasks if t is not current), return_exceptions=True)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
