"""Callbacks after abandoned calls, and follow-up calls on dates an agent set.

Safe by design:

* A woman who hung up (in a queue, or in the IVR after choosing a category) is called
  back only if she said in the IVR that a call back is safe (``callback_ok``). Otherwise
  the abandon waits on the supervisors' list for a decision (approve -> scheduled,
  dismiss). Her latest answer wins: a repeat abandon saying "not safe" takes a scheduled
  callback back to the supervisors.
* A repeat abandon from the same woman while her callback is open (or within
  ``repeat_window`` of it finishing unreached) updates that callback; she never gets two.
* The call rings a free agent first (the dialler's ``Local/s@wpl-callback``) and only
  then her, presenting ``presented_number`` (neutral, never 1090). Her number is opened
  from the vault at dial time, handed to the dialler and dropped.
* The outcome lands on the callback row and, when there is a case, on its timeline, in
  the transaction that commits the task (an outcome hook).

Nothing here logs or stores a number: rows carry the identity id and her token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import event, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from callcenter.cases.models import CallerIdentity, Case, CaseNote
from callcenter.cases.vault import Purpose, Vault
from callcenter.pbx.models import CallRecord
from callcenter.store import Store

from .callback_models import (
    OPEN_STATUSES,
    Callback,
    CallbackCall,
    CallbackKind,
    CallbackOutcome,
    CallbackStatus,
)
from .dialler import NOT_CALLED, DialResult, OutboundCall
from .errors import FollowupError, RetryTask, TaskFailed
from .models import FINAL_STATES, ScheduledTask, TaskState, aware
from .scheduler import CallSettler, Handler, Scheduler, TaskContext, TaskReport

log = logging.getLogger(__name__)

#: The scheduler's task kind for every call of this module.
CALLBACK_TASK = "callback"
#: Who the timeline and the callback row name for what the PBX reported.
PBX_ACTOR = "followups"

ABANDONED_OUTCOMES = frozenset({"abandoned_queue", "abandoned_ivr"})
#: What an agent may record after speaking (or failing to speak) to her.
AGENT_OUTCOMES = frozenset({CallbackOutcome.WRONG_PERSON, CallbackOutcome.UNSAFE_TO_TALK})

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- errors --------------------------------------------------------------------------------


class CallbackNotFound(FollowupError, LookupError):
    code = "callback_not_found"


class CallbackConflict(FollowupError):
    """The callback is not in a state that allows this (already decided, finished...)."""

    code = "callback_conflict"


class CallbackInvalid(FollowupError, ValueError):
    code = "callback_invalid"


# -- settings and views -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    """``[followups]`` in the service configuration (see the report for the wiring)."""

    #: The number her phone shows. Never 1090: a family member seeing the helpline's
    #: number on her phone can put her in danger. Set it to the registered neutral DID.
    presented_number: str = "0000000000"
    #: How long the callback waits in ``wpl-callback`` for a free agent (the Originate's
    #: Timeout covers it); after that the attempt is retried, it is not "no answer".
    queue_wait_s: int = 120
    ring_s: int = 45
    #: First attempt this long after the abandon (she may call again herself).
    first_delay: timedelta = timedelta(minutes=2)
    repeat_window: timedelta = timedelta(hours=2)
    max_attempts: int = 3
    #: Queue priority in ``wpl-callback`` (higher rings first): abandons before follow-ups.
    abandoned_priority: int = 5
    followup_priority: int = 2
    #: Retry delay when no agent was free (she was not dialled, so sooner than backoff).
    agent_timeout_retry: timedelta = timedelta(minutes=1)
    #: The sweep looks again at abandons that ended this far back and were never decided
    #: (the instance died between the call's end and the decision).
    sweep_lookback: timedelta = timedelta(hours=6)
    #: How often the sweep runs (seconds) while this instance runs the scheduler.
    sweep_interval_s: float = 300.0
    #: The live path decides within moments of the call's end; the sweep leaves it that
    #: long so the two rarely do the same work (the decision is idempotent either way).
    sweep_grace: timedelta = timedelta(minutes=2)
    #: A finished task's AstDB keys are deleted again by the sweep this long after it
    #: finished: a failed delete, or a key a stale settler or Originate wrote back late.
    keys_linger: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        number = self.presented_number.lstrip("+")
        if not number.isdigit() or number.endswith("1090") and len(number) <= 6:
            raise ValueError("presented_number must be a neutral number, not the helpline's")
        if self.sweep_lookback <= timedelta(0) or self.sweep_interval_s <= 0:
            raise ValueError("the callback sweep needs a positive lookback and interval")


@dataclass(frozen=True, slots=True)
class CallbackView:
    """A callback as staff see it: token and reason, never the number."""

    id: int
    kind: str
    status: str
    token: str
    reason: str
    category: str | None
    language: str | None
    case_id: int | None
    call_record_id: int | None
    due_at: datetime
    attempts: int
    outcome: str | None
    outcome_by: str | None
    repeats: int
    requested_by: str
    decided_by: str | None
    created_at: datetime


def _view(row: Callback) -> CallbackView:
    return CallbackView(
        id=row.id, kind=row.kind, status=row.status, token=row.caller_token,
        reason=row.reason, category=row.category, language=row.language,
        case_id=row.case_id, call_record_id=row.call_record_id, due_at=aware(row.due_at),
        attempts=row.attempts, outcome=row.outcome, outcome_by=row.outcome_by,
        repeats=row.repeats, requested_by=row.requested_by, decided_by=row.decided_by,
        created_at=aware(row.created_at),
    )


class Dialler(Protocol):
    async def place(self, ctx: TaskContext, call: OutboundCall) -> DialResult: ...


class TaskKeys(Protocol):
    """Deletes what the PBX keeps about a finished task (AstDB fence and mark)."""

    async def forget(self, task_id: int) -> bool: ...


@dataclass(slots=True)
class SweepReport:
    """What one sweep did (counts only)."""

    #: Undecided abandons that now have their decision (a callback row, or a link).
    decided: int = 0
    #: Undecided abandons looked at that still make no callback (blocked, withheld...).
    skipped: int = 0
    failed: int = 0
    #: Finished tasks whose AstDB keys were deleted again.
    keys_forgotten: int = 0


#: Where the call-records query of one sweep stops; the next sweep takes the rest.
_SWEEP_BATCH = 500
#: The AMI queue the callback's agent half waits in (dialplans/extensions_1090.conf).
CALLBACK_QUEUE = "wpl-callback"
_KEYS_PENDING = "callback_task_keys"


# -- the service --------------------------------------------------------------------------


class CallbackService:
    """Decides, schedules and places callbacks and follow-up calls."""

    def __init__(
        self,
        store: Store,
        vault: Vault,
        settings: CallbackSettings | None = None,
        *,
        dialler: Dialler | None = None,
        is_blocked: Callable[[int], Awaitable[bool]] | None = None,
        task_keys: TaskKeys | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._vault = vault
        self.settings = settings or CallbackSettings()
        self._dialler = dialler
        self._is_blocked = is_blocked
        self._task_keys = task_keys
        self._clock = clock
        self._scheduler: Scheduler | None = None
        self._cleanups: set[asyncio.Task[bool]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        #: Tasks finished before this were already swept for keys by this instance.
        self._keys_swept_to: datetime | None = None

    # -- wiring ---------------------------------------------------------------------------

    def handlers(self) -> dict[str, Callable[[TaskContext], Awaitable[str | None]]]:
        """The scheduler handlers of this service (only where a dialler is set)."""
        return {CALLBACK_TASK: self.run} if self._dialler is not None else {}

    def bind(self, scheduler: Scheduler) -> None:
        """The scheduler whose table the callbacks' tasks go into."""
        self._scheduler = scheduler

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise RuntimeError("CallbackService.bind(scheduler) was not called")
        return self._scheduler

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    # -- abandoned calls ------------------------------------------------------------------

    async def call_ended(self, node: str, linkedid: str) -> CallbackView | None:
        """Look at a call's record once it ended; an abandon becomes (or updates) a callback.

        Safe to call twice for one call (a replay links nothing twice).
        """
        async with self._store.session() as session:
            record = await session.scalar(
                select(CallRecord).where(CallRecord.node == node, CallRecord.linkedid == linkedid)
            )
        if record is None:
            return None
        return await self.consider(record)

    async def consider(self, record: CallRecord, *, late: bool = False) -> CallbackView | None:
        """The decision for one ended call. ``late`` (the sweep): a later word of hers, or
        a supervisor's decision made after this call ended, stands; the call is only linked.
        """
        if record.outcome not in ABANDONED_OUTCOMES or record.caller_identity_id is None:
            return None
        if record.outcome == "abandoned_ivr" and not record.category:
            # She left before saying what it was about: nothing to call back about.
            return None
        if self._is_blocked is not None and await self._is_blocked(record.caller_identity_id):
            return None
        for _attempt in range(3):
            try:
                view = await self._merge_or_create(record, late=late)
            except IntegrityError:
                continue  # another abandon of hers was stored at the same moment: merge
            if view is not None and view.status == CallbackStatus.SCHEDULED:
                self.scheduler.wake()
            return view
        raise CallbackConflict("callback for this caller kept changing hands")

    async def _merge_or_create(self, record: CallRecord, *, late: bool = False,
                               ) -> CallbackView | None:
        now = self._now()
        identity_id = record.caller_identity_id
        assert identity_id is not None
        opted_in = record.callback_ok is True
        async with self._store.transaction() as session:
            if await session.scalar(
                select(CallbackCall.id).where(CallbackCall.call_record_id == record.id)
            ) is not None:
                return None  # this call was handled already
            identity = await session.get(CallerIdentity, identity_id)
            if identity is None or identity.sealed is None:
                return None  # withheld: there is no number to call back
            if late:
                newer = await self._newer_word(session, record)
                if newer is not None:
                    # What happened after this call (her later call, a supervisor's
                    # dismissal, a call to her) already answered it: link, change nothing.
                    newer.repeats += 1
                    newer.updated_at = now
                    session.add(CallbackCall(callback_id=newer.id, call_record_id=record.id,
                                             at=now))
                    await session.flush()
                    return _view(newer)
            row = await session.scalar(
                select(Callback)
                .where(
                    Callback.caller_identity_id == identity_id,
                    Callback.kind == CallbackKind.ABANDONED,
                    or_(
                        Callback.status.in_([s.value for s in OPEN_STATUSES]),
                        (Callback.updated_at >= now - self.settings.repeat_window)
                        & (Callback.outcome != CallbackOutcome.REACHED),
                    ),
                )
                .order_by(Callback.id.desc())
                .limit(1)
                .with_for_update()
            )
            if row is None:
                row = Callback(
                    kind=CallbackKind.ABANDONED.value, caller_identity_id=identity_id,
                    caller_token=record.caller_token or identity.token_code,
                    open_for_identity=identity_id, reason=record.outcome or "abandoned",
                    category=record.category, language=record.language,
                    queue_priority=self.settings.abandoned_priority,
                    due_at=now + self.settings.first_delay, attempts=0, repeats=1,
                    requested_by="ivr", call_record_id=record.id,
                    status=CallbackStatus.AWAITING_DECISION.value,
                    created_at=now, updated_at=now,
                )
                session.add(row)
                await session.flush()
            else:
                row.repeats += 1
                row.call_record_id = record.id
                row.reason = record.outcome or row.reason
                row.category = record.category or row.category
                row.updated_at = now
                if row.status not in OPEN_STATUSES:
                    # Finished unreached a short while ago: the same promise, reopened.
                    row.status = CallbackStatus.AWAITING_DECISION.value
                    row.open_for_identity = identity_id
                    row.outcome = None
                    row.due_at = now + self.settings.first_delay
            session.add(CallbackCall(callback_id=row.id, call_record_id=record.id, at=now))
            if opted_in:
                if row.status == CallbackStatus.AWAITING_DECISION:
                    await self._schedule(session, row, decided_by="ivr")
            elif row.status == CallbackStatus.SCHEDULED:
                # Her latest word is that a call is not safe now: back to a person.
                if row.task_id is None or await self.scheduler.cancel_in(session, row.task_id):
                    row.status = CallbackStatus.AWAITING_DECISION.value
                    row.task_id = None
                    row.decided_by = None
            await session.flush()
            return _view(row)

    async def _newer_word(self, session: AsyncSession, record: CallRecord) -> Callback | None:
        """Her abandoned-call callback that something touched after ``record`` ended."""
        ended = record.ended_at or record.started_at
        if ended is None:
            return None
        latest_call = select(func.coalesce(CallRecord.ended_at, CallRecord.started_at)).where(
            CallRecord.id == Callback.call_record_id
        ).scalar_subquery()
        return await session.scalar(
            select(Callback)
            .where(
                Callback.caller_identity_id == record.caller_identity_id,
                Callback.kind == CallbackKind.ABANDONED,
                or_(
                    latest_call > ended,
                    Callback.decided_at >= ended,
                    Callback.outcome_at >= ended,
                ),
            )
            .order_by(Callback.id.desc())
            .limit(1)
            .with_for_update()
        )

    async def _schedule(self, session: AsyncSession, row: Callback, *, decided_by: str) -> None:
        now = self._now()
        row.status = CallbackStatus.SCHEDULED.value
        row.decided_by = decided_by
        row.decided_at = now
        row.updated_at = now
        row.task_id = await self.scheduler.add(
            session, CALLBACK_TASK, {"callback_id": row.id}, row.due_at,
            max_attempts=self.settings.max_attempts, case_id=row.case_id,
            call_record_id=row.call_record_id,
        )

    # -- the supervisors' decisions -------------------------------------------------------

    async def awaiting_decision(self, limit: int = 200) -> list[CallbackView]:
        async with self._store.session() as session:
            rows = await session.scalars(
                select(Callback)
                .where(Callback.status == CallbackStatus.AWAITING_DECISION)
                .order_by(Callback.created_at)
                .limit(limit)
            )
            return [_view(r) for r in rows]

    async def approve(self, callback_id: int, supervisor: str,
                      due_at: datetime | None = None) -> CallbackView:
        async with self._store.transaction() as session:
            row = await self._load(session, callback_id)
            if row.status != CallbackStatus.AWAITING_DECISION:
                raise CallbackConflict(f"callback {callback_id} is {row.status}, not awaiting")
            row.due_at = max(due_at.astimezone(UTC), self._now()) if due_at else self._now()
            await self._schedule(session, row, decided_by=_actor(supervisor))
            view = _view(row)
        self.scheduler.wake()
        return view

    async def dismiss(self, callback_id: int, supervisor: str) -> CallbackView:
        now = self._now()
        async with self._store.transaction() as session:
            row = await self._load(session, callback_id)
            if row.status != CallbackStatus.AWAITING_DECISION:
                raise CallbackConflict(f"callback {callback_id} is {row.status}, not awaiting")
            row.status = CallbackStatus.DISMISSED.value
            row.open_for_identity = None
            row.decided_by = _actor(supervisor)
            row.decided_at = now
            row.updated_at = now
            return _view(row)

    # -- follow-up calls ------------------------------------------------------------------

    async def schedule_followup(self, case_id: int, due_at: datetime, agent: str,
                                ) -> CallbackView:
        """A follow-up call to the woman of case ``case_id`` at ``due_at``."""
        now = self._now()
        due = due_at.astimezone(UTC)
        if due < now - timedelta(minutes=1):
            raise CallbackInvalid("the follow-up date is in the past")
        if due > now + timedelta(days=366):
            raise CallbackInvalid("the follow-up date is more than a year away")
        async with self._store.transaction() as session:
            case = await session.get(Case, case_id)
            if case is None:
                raise CallbackNotFound(f"no case {case_id}")
            if case.caller_identity_id is None:
                raise CallbackInvalid("the case has no caller identity to call")
            identity = await session.get(CallerIdentity, case.caller_identity_id)
            if identity is None or identity.sealed is None:
                raise CallbackInvalid("she withheld her number: there is nothing to call")
            row = Callback(
                kind=CallbackKind.FOLLOWUP.value, caller_identity_id=identity.id,
                caller_token=identity.token_code, case_id=case.id, reason="followup",
                category=case.category, language=case.language,
                queue_priority=self.settings.followup_priority, due_at=due, attempts=0,
                repeats=1, requested_by=_actor(agent),
                status=CallbackStatus.AWAITING_DECISION.value, created_at=now, updated_at=now,
            )
            session.add(row)
            await session.flush()
            # The agent who set the date decided it: it is scheduled at once.
            await self._schedule(session, row, decided_by=_actor(agent))
            session.add(CaseNote(case_id=case.id, at=now, author=_actor(agent),
                                 text=f"follow-up call set for {due:%Y-%m-%d %H:%M} UTC"))
            view = _view(row)
        self.scheduler.wake()
        return view

    async def for_case(self, case_id: int) -> list[CallbackView]:
        async with self._store.session() as session:
            rows = await session.scalars(
                select(Callback).where(Callback.case_id == case_id).order_by(Callback.due_at)
            )
            return [_view(r) for r in rows]

    async def cancel(self, callback_id: int, by: str) -> CallbackView:
        """Cancel a callback that has not started its call (a running one cannot be)."""
        now = self._now()
        async with self._store.transaction() as session:
            row = await self._load(session, callback_id)
            if row.status not in OPEN_STATUSES:
                raise CallbackConflict(f"callback {callback_id} is {row.status} already")
            if row.task_id is not None and not await self.scheduler.cancel_in(
                session, row.task_id
            ):
                raise CallbackConflict(f"callback {callback_id} is being called right now")
            row.status = CallbackStatus.CANCELLED.value
            row.open_for_identity = None
            row.outcome_by = _actor(by)
            row.updated_at = now
            if row.case_id is not None:
                session.add(CaseNote(case_id=row.case_id, at=now, author=_actor(by),
                                     text=f"{_label(row.kind)} call cancelled"))
            return _view(row)

    async def get(self, callback_id: int) -> CallbackView:
        async with self._store.session() as session:
            return _view(await self._load(session, callback_id))

    async def record_outcome(self, callback_id: int, outcome: str, agent: str) -> CallbackView:
        """The agent's word after the call: someone else answered, or she could not talk."""
        try:
            value = CallbackOutcome(outcome)
        except ValueError:
            raise CallbackInvalid(f"outcome must be one of {sorted(AGENT_OUTCOMES)}") from None
        if value not in AGENT_OUTCOMES:
            raise CallbackInvalid(f"outcome must be one of {sorted(AGENT_OUTCOMES)}")
        now = self._now()
        async with self._store.transaction() as session:
            row = await self._load(session, callback_id)
            if row.outcome not in (CallbackOutcome.REACHED, CallbackOutcome.PLACED):
                raise CallbackConflict("only a call that was answered can have this outcome")
            row.outcome = value.value
            row.outcome_by = _actor(agent)
            row.outcome_at = now
            row.updated_at = now
            if row.case_id is not None:
                session.add(CaseNote(case_id=row.case_id, at=now, author=_actor(agent),
                                     text=f"{_label(row.kind)} call: {value.value}"))
            return _view(row)

    async def _load(self, session: AsyncSession, callback_id: int) -> Callback:
        row = await session.get(Callback, callback_id, with_for_update=True)
        if row is None:
            raise CallbackNotFound(f"no callback {callback_id}")
        return row

    # -- running a callback (the scheduler's handler) -------------------------------------

    async def run(self, ctx: TaskContext) -> str:
        dialler = self._dialler
        if dialler is None:
            raise TaskFailed("no_dialler", outcome=CallbackOutcome.NOT_ALLOWED.value)
        callback_id = ctx.payload.get("callback_id")
        if not isinstance(callback_id, int):
            raise TaskFailed("bad_payload", outcome=CallbackOutcome.NOT_ALLOWED.value)
        async with self._store.session() as session:
            row = await session.get(Callback, callback_id)
            if row is None or row.status != CallbackStatus.SCHEDULED:
                raise TaskFailed("not_scheduled", outcome=CallbackOutcome.NOT_ALLOWED.value)
            identity = await session.get(CallerIdentity, row.caller_identity_id)
            token, reason, priority = row.caller_token, row.reason, row.queue_priority
            category, language = row.category, row.language
        if identity is None or identity.sealed is None:
            raise TaskFailed("no_number", outcome=CallbackOutcome.NOT_ALLOWED.value)
        if self._is_blocked is not None and await self._is_blocked(identity.id):
            raise TaskFailed("blocked", outcome=CallbackOutcome.NOT_ALLOWED.value)
        # Opened now, used for this one Originate, never kept.
        number = self._vault.open(identity.sealed, Purpose.CALLER)
        settings = self.settings
        result = await dialler.place(ctx, OutboundCall(
            destination=number.e164, token=token, callback_id=callback_id, reason=reason,
            category=category, language=language,
            presented_number=settings.presented_number, queue_wait_s=settings.queue_wait_s,
            ring_s=settings.ring_s, queue_priority=priority,
        ))
        del number
        if result is DialResult.REACHED:
            return result.value
        if result in NOT_CALLED:
            raise RetryTask(result.value, delay=settings.agent_timeout_retry)
        raise RetryTask(result.value)

    async def on_task_outcome(self, session: AsyncSession, report: TaskReport) -> None:
        """Outcome hook: the callback row (and the case timeline) follow their task."""
        if report.kind != CALLBACK_TASK:
            return
        callback_id = report.payload.get("callback_id")
        if not isinstance(callback_id, int):
            return
        if report.state in FINAL_STATES:
            self._forget_keys_after_commit(session, report.task_id)
        row = await session.get(Callback, callback_id, with_for_update=True)
        if row is None or row.task_id != report.task_id:
            return
        now = self._now()
        outcome = _outcome_of(report)
        row.attempts = report.attempts
        row.outcome = outcome
        row.outcome_by = PBX_ACTOR
        row.outcome_at = now
        row.updated_at = now
        if report.state is TaskState.DONE:
            row.status = CallbackStatus.DONE.value
        elif report.state is TaskState.FAILED:
            row.status = (
                CallbackStatus.FAILED.value if outcome != CallbackOutcome.NOT_ALLOWED
                else row.status if row.status not in OPEN_STATUSES
                else CallbackStatus.CANCELLED.value
            )
        if row.status not in OPEN_STATUSES:
            row.open_for_identity = None
        if row.case_id is not None:
            session.add(CaseNote(
                case_id=row.case_id, at=now, author=PBX_ACTOR,
                text=f"{_label(row.kind)} call attempt {report.attempts}: {outcome}"
                + ("" if row.status in OPEN_STATUSES else f" ({row.status})"),
            ))


    # -- AstDB hygiene ----------------------------------------------------------------------

    def _forget_keys_after_commit(self, session: AsyncSession, task_id: int) -> None:
        """Delete the task's AstDB keys once its final state is committed (not before: until
        then a settler may still need the fence and the mark)."""
        if self._task_keys is None:
            return
        pending: set[int] | None = session.info.get(_KEYS_PENDING)
        if pending is None:
            pending = session.info[_KEYS_PENDING] = set()
            loop = asyncio.get_running_loop()

            def committed(sync_session: Session) -> None:
                # after_commit also fires when the hook's savepoint is released.
                if sync_session.in_nested_transaction():
                    return
                for done_task in sorted(sync_session.info.pop(_KEYS_PENDING, set())):
                    cleanup = loop.create_task(self._forget_keys(done_task))
                    self._cleanups.add(cleanup)
                    cleanup.add_done_callback(self._cleanups.discard)

            event.listen(session.sync_session, "after_commit", committed)
        pending.add(task_id)

    async def _forget_keys(self, task_id: int) -> bool:
        if self._task_keys is None:
            return True
        try:
            return await self._task_keys.forget(task_id)
        except Exception as exc:  # noqa: BLE001 - best effort: the sweep deletes them later
            log.warning("task %s: AstDB keys not deleted: %s", task_id, type(exc).__name__)
            return False

    # -- the sweep ----------------------------------------------------------------------------

    async def sweep(self) -> SweepReport:
        """Decide abandons whose decision was lost; delete finished tasks' AstDB keys again.

        Idempotent and safe on several instances at once: an abandon is decided at most once
        (``callback_call`` is unique per call; her open callback is unique per woman).
        """
        report = SweepReport()
        now = self._now()
        settings = self.settings
        moment = func.coalesce(CallRecord.ended_at, CallRecord.started_at)
        async with self._store.session() as session:
            records = list(await session.scalars(
                select(CallRecord)
                .where(
                    CallRecord.outcome.in_(sorted(ABANDONED_OUTCOMES)),
                    CallRecord.caller_identity_id.is_not(None),
                    or_(CallRecord.outcome != "abandoned_ivr", CallRecord.category.is_not(None)),
                    moment >= now - settings.sweep_lookback,
                    moment <= now - settings.sweep_grace,
                    ~exists().where(CallbackCall.call_record_id == CallRecord.id),
                )
                .order_by(moment)
                .limit(_SWEEP_BATCH)
            ))
        for record in records:
            try:
                view = await self.consider(record, late=True)
            except Exception as exc:  # noqa: BLE001 - one record must not stop the rest
                report.failed += 1
                log.warning("sweep: call record %s not decided: %s", record.id,
                            type(exc).__name__)
                continue
            if view is None:
                report.skipped += 1
            else:
                report.decided += 1
        if report.decided:
            log.info("sweep: %s abandoned calls decided late", report.decided)
        report.keys_forgotten = await self._sweep_keys(now)
        return report

    async def _sweep_keys(self, now: datetime) -> int:
        if self._task_keys is None:
            return 0
        until = now - self.settings.keys_linger
        since = self._keys_swept_to or until - self.settings.sweep_lookback
        if until <= since:
            return 0
        async with self._store.session() as session:
            task_ids = list(await session.scalars(
                select(ScheduledTask.id).where(
                    ScheduledTask.kind == CALLBACK_TASK,
                    ScheduledTask.state.in_([s.value for s in FINAL_STATES]),
                    ScheduledTask.finished_at > since,
                    ScheduledTask.finished_at <= until,
                ).order_by(ScheduledTask.id)
            ))
        forgotten = 0
        for task_id in task_ids:
            if not await self._forget_keys(task_id):
                # The PBX is away: this window is looked at again on the next sweep.
                return forgotten
            forgotten += 1
        self._keys_swept_to = until
        return forgotten

    def start_sweeping(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="callback-sweep")

    async def stop_sweeping(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        cleanups = list(self._cleanups)
        if cleanups:
            # Deletes under way may finish; what does not is deleted by a later sweep.
            _done, not_done = await asyncio.wait(cleanups, timeout=5.0)
            for task in not_done:
                task.cancel()

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - database away: try at the next round
                log.warning("callback sweep failed: %s", type(exc).__name__)
            await asyncio.sleep(self.settings.sweep_interval_s)

    # -- who may speak for a callback's call --------------------------------------------

    async def took_call(self, callback_id: int, endpoint: str | None) -> bool:
        """Whether the agent at ``endpoint`` answered a call placed for this callback.

        A callback call is recorded like any call: queued in ``wpl-callback`` under her
        token, answered by an agent's interface, after the callback existed.
        """
        if not endpoint:
            return False
        async with self._store.session() as session:
            row = await self._load_plain(session, callback_id)
            found = await session.scalar(
                select(CallRecord.id).where(
                    CallRecord.caller_token == row.caller_token,
                    CallRecord.queue == CALLBACK_QUEUE,
                    CallRecord.agent_interface == endpoint,
                    func.coalesce(CallRecord.started_at, CallRecord.ended_at)
                    >= row.created_at,
                ).limit(1)
            )
        return found is not None

    async def _load_plain(self, session: AsyncSession, callback_id: int) -> Callback:
        row = await session.get(Callback, callback_id)
        if row is None:
            raise CallbackNotFound(f"no callback {callback_id}")
        return row


def _outcome_of(report: TaskReport) -> str:
    # A retry's reason is the attempt's result (no_answer, busy...); giving up keeps the
    # last attempt's result rather than the scheduler's generic "gave_up".
    known = {o.value for o in CallbackOutcome}
    if report.state is TaskState.PENDING or report.outcome == "gave_up":
        if report.error in known:
            return str(report.error)
    if report.outcome in known:
        return str(report.outcome)
    return CallbackOutcome.GAVE_UP.value if report.state is TaskState.FAILED else "retry"


def _label(kind: str) -> str:
    return "follow-up" if kind == CallbackKind.FOLLOWUP else "callback"


def _actor(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 32:
        raise CallbackInvalid("a username of 1..32 characters")
    return name


# -- composition --------------------------------------------------------------------------


@dataclass
class Followups:
    """What :func:`build_followups` hands the composition root."""

    callbacks: CallbackService
    scheduler: Scheduler
    dialler: Any

    def start(self) -> None:
        """Run the scheduler and the sweep (while this instance owns the PBX the dialler
        talks to)."""
        self.scheduler.start()
        self.callbacks.start_sweeping()

    async def stop(self) -> None:
        """Stop claiming; running calls finish or are settled by the next owner."""
        await self.callbacks.stop_sweeping()
        await self.scheduler.stop()


def build_followups(
    center: Any,
    runtime: Any,
    settings: CallbackSettings | None = None,
    *,
    handlers: Mapping[str, Handler] | None = None,
    settler: Callable[[CallSettler], CallSettler] | None = None,
) -> Followups:
    """The callback service and scheduler of ``center`` (a ``CallCenter``), dialling through
    ``runtime`` (its ``NodeRuntime`` for the PBX that places callbacks). ``handlers`` adds
    other task kinds to the same scheduler; ``settler`` wraps the call settler.

    Abandoned calls reach the service from the node's call-ended events. The recorder's
    write of the call's end is an idempotent upsert, so it is awaited here again before
    the record is read, rather than racing the node's own write.
    """
    import asyncio

    from .dialler import AmiCallSettler, AmiDialler

    ops = runtime.node.ops
    dialler = AmiDialler(runtime.client, ops=ops)
    dialler.start()
    callbacks = CallbackService(
        center.store, center.vault, settings, dialler=dialler,
        is_blocked=center.cases.is_blocked, task_keys=dialler,
    )
    # One scheduler per instance runs every kind of task: other features (referral
    # deadlines, SMS) bring their handlers, and may wrap the call settler with their own.
    calls_settler: CallSettler = AmiCallSettler(ops)
    scheduler = Scheduler(
        center.store, center.instance_id, {**callbacks.handlers(), **(handlers or {})},
        settler=settler(calls_settler) if settler is not None else calls_settler,
        hooks=[callbacks.on_task_outcome],
    )
    callbacks.bind(scheduler)
    pending: set[asyncio.Task[None]] = set()

    async def after_call(call: Any) -> None:
        try:
            await center.recorder.call_ended(runtime.name, call)
            await callbacks.call_ended(runtime.name, call.linkedid)
        except Exception as exc:  # noqa: BLE001 - one call's callback must not stop the node
            log.error("callback decision for a call failed: %s", type(exc).__name__)

    def on_call_ended(call: Any) -> None:
        task = asyncio.ensure_future(after_call(call))
        pending.add(task)
        task.add_done_callback(pending.discard)

    runtime.node.model.on_call_ended(on_call_ended)
    return Followups(callbacks, scheduler, dialler)
