"""Referrals to field units, with deadlines chased by the durable scheduler.

Three parts:

* :class:`ReferralDirectory`: the departments and units the helpline refers to, each with
  the hours it has to acknowledge a referral (its SLA), loaded from
  ``config/referrals.toml`` with an error that names the bad key.
* :class:`ReferralService`: a referral belongs to a case; creating one records "referred" on
  the case's timeline and moves the case to ``referred`` where its state machine allows,
  in the same transaction, then schedules a ``referral-deadline`` task at the deadline.
* The deadline task (:meth:`ReferralService.run_deadline`): when it runs and the unit has
  not answered, the referral is escalated one level, the case's timeline says so, the next
  deadline is scheduled and the supervisors are told on the bus.

Exactly once: the scheduler runs a task once across instances, but the handler's own write
is a transaction of its own, before the scheduler commits the task. So the escalation is a
conditional ``UPDATE ... WHERE escalation_level = <the level the task was for>``: a rerun
after a crash, a second task for the same deadline, or a supervisor escalating by hand at
the same moment find the level moved and change nothing.

:meth:`ReferralService.sweep` keeps an in-memory list of overdue referrals fresh for the
wallboard (which reads synchronously), and re-schedules a deadline task that was lost
between a referral's commit and its task's (both idempotent through the dedupe key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.bus import Bus, BusEvent
from callcenter.cases.audit import scrub_text
from callcenter.cases.errors import InvalidReference
from callcenter.cases.models import Case, CaseActionKind, CaseNote
from callcenter.cases.reference import parse_reference
from callcenter.cases.service import CaseNotFound, CaseService
from callcenter.store import Store

from .errors import FollowupError, TaskFailed
from .models import aware
from .referral_models import (
    NAME_MAX,
    UNIT_CODE_MAX,
    USERNAME_MAX,
    WAITING_FOR_UNIT,
    Referral,
    ReferralStatus,
)
from .scheduler import Handler, TaskContext

log = logging.getLogger(__name__)

#: The scheduler task kind that chases a referral's deadline.
REFERRAL_DEADLINE = "referral-deadline"
#: Who the timeline names for what the scheduler did.
SYSTEM_ACTOR = "system"
_REASON_MAX = 4000
_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- errors


class ReferralError(FollowupError):
    code: ClassVar[str] = "referral_error"


class ReferralDirectoryInvalid(ReferralError, ValueError):
    """The directory file is wrong; the message names the file and the key."""

    code: ClassVar[str] = "referral_directory_invalid"


class ReferralNotFound(ReferralError, LookupError):
    code: ClassVar[str] = "referral_not_found"


class ReferralInvalid(ReferralError, ValueError):
    """A field of a referral request is wrong; ``field`` names it."""

    code: ClassVar[str] = "referral_invalid"

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class ReferralConflict(ReferralError):
    """The referral is not in a state that allows this (closed, already answered...)."""

    code: ClassVar[str] = "referral_conflict"


# --------------------------------------------------------------------------- directory


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


_CODE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"


class _SettingsFile(_Strict):
    max_escalation_level: int = Field(default=3, ge=1, le=10)
    escalation_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    #: The department whose units register FIRs (level 3 of the harasser response).
    fir_department: str = Field(default="police-whd", pattern=_CODE_PATTERN)


class _DepartmentFile(_Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    sla_hours: float = Field(gt=0, le=24 * 90)


class _UnitFile(_Strict):
    code: str = Field(pattern=_CODE_PATTERN)
    department: str
    name: str = Field(min_length=1, max_length=NAME_MAX * 2)
    district: str | None = Field(default=None, max_length=64)
    sla_hours: float | None = Field(default=None, gt=0, le=24 * 90)
    active: bool = True


class _DirectoryFile(_Strict):
    settings: _SettingsFile = Field(default_factory=_SettingsFile)
    departments: dict[str, _DepartmentFile]
    units: list[_UnitFile] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Department:
    code: str
    name: str
    sla: timedelta


@dataclass(frozen=True, slots=True)
class Unit:
    code: str
    department: Department
    name: str
    district: str | None
    sla: timedelta
    active: bool


class ReferralDirectory:
    """Departments and units by code, with their SLAs and the escalation rules."""

    def __init__(
        self,
        departments: Mapping[str, Department],
        units: Sequence[Unit],
        *,
        max_escalation_level: int = 3,
        escalation_delay: timedelta = timedelta(hours=12),
        fir_department: str = "police-whd",
    ) -> None:
        self.departments = dict(departments)
        self._units = {unit.code: unit for unit in units}
        self.max_escalation_level = max_escalation_level
        self.escalation_delay = escalation_delay
        self.fir_department = fir_department

    def unit(self, code: str) -> Unit:
        unit = self._units.get(code.strip())
        if unit is None:
            raise ReferralInvalid("unit", "no such unit in the referral directory")
        return unit

    def units(self, *, active_only: bool = True) -> list[Unit]:
        return [u for u in self._units.values() if u.active or not active_only]

    def police_desk_for(self, district: str | None) -> Unit | None:
        """The women's help desk of the case's district, when there is exactly one."""
        if district is None:
            return None
        wanted = district.strip().casefold()
        found = [
            u for u in self.units()
            if u.department.code == self.fir_department
            and u.district is not None and u.district.casefold() == wanted
        ]
        return found[0] if len(found) == 1 else None


def _where(loc: Sequence[int | str], data: Mapping[str, Any]) -> str:
    # "units[3] (ps-x).sla_hours": the index alone is hard to find in a long file.
    text = ""
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
            if depth == 1 and loc[0] == "units":
                units = data.get("units")
                if isinstance(units, list) and part < len(units):
                    code = units[part].get("code") if isinstance(units[part], dict) else None
                    if isinstance(code, str):
                        text += f" ({code})"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def directory_from_mapping(data: Mapping[str, Any], source: str = "referrals") -> ReferralDirectory:
    """A directory from parsed TOML; :class:`ReferralDirectoryInvalid` names each bad key."""
    try:
        parsed = _DirectoryFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"{_where(tuple(error['loc']), data)}: {message}")
        raise ReferralDirectoryInvalid(
            f"{source}: invalid referral directory:\n  " + "\n  ".join(problems)
        ) from None
    departments: dict[str, Department] = {}
    for code, department in parsed.departments.items():
        if not _CODE.fullmatch(code):
            raise ReferralDirectoryInvalid(
                f"{source}: departments.{code}: a code of lower-case letters, digits and -"
            )
        departments[code] = Department(code, department.name, timedelta(hours=department.sla_hours))
    units: list[Unit] = []
    seen: set[str] = set()
    for index, unit in enumerate(parsed.units):
        where = f"{source}: units[{index}] ({unit.code})"
        if unit.code in seen:
            raise ReferralDirectoryInvalid(f"{where}.code: used by another unit")
        seen.add(unit.code)
        department = departments.get(unit.department)
        if department is None:
            raise ReferralDirectoryInvalid(f"{where}.department: no department {unit.department!r}")
        sla = timedelta(hours=unit.sla_hours) if unit.sla_hours is not None else department.sla
        units.append(Unit(unit.code, department, unit.name, unit.district, sla, unit.active))
    settings = parsed.settings
    if settings.fir_department not in departments:
        raise ReferralDirectoryInvalid(
            f"{source}: settings.fir_department: no department {settings.fir_department!r}"
        )
    return ReferralDirectory(
        departments, units,
        max_escalation_level=settings.max_escalation_level,
        escalation_delay=timedelta(hours=settings.escalation_hours),
        fir_department=settings.fir_department,
    )


def load_directory(path: Path) -> ReferralDirectory:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReferralDirectoryInvalid(f"{path}: cannot read it ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ReferralDirectoryInvalid(f"{path}: not valid TOML ({exc})") from None
    return directory_from_mapping(data, str(path))


# --------------------------------------------------------------------------- views, events


@dataclass(frozen=True, slots=True)
class ReferralView:
    id: int
    case_id: int
    case_reference: str
    unit_code: str
    unit_name: str
    department: str
    reason: str
    status: ReferralStatus
    created_by: str
    created_at: datetime
    deadline_at: datetime
    next_deadline_at: datetime | None
    escalation_level: int
    escalated_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledgement_recorded_by: str | None
    closed_by: str | None
    closed_at: datetime | None
    closing_note: str | None
    #: Past its deadline with no word from the unit, at the time of reading.
    overdue: bool


class ReferralEscalated(BusEvent):
    """A referral's deadline passed without an answer: the supervisors chase the unit."""

    topic: ClassVar[str] = "followups.referral_escalated"

    referral_id: int
    case_reference: str
    unit_code: str
    escalation_level: int
    #: By a supervisor's hand, or the scheduler's (``system``).
    actor: str


class TaskPlanner(Protocol):
    """What the service needs of the scheduler: storing a task."""

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
    ) -> int: ...


def deadline_key(referral_id: int, level: int) -> str:
    return f"referral:{referral_id}:level:{level}"


def _maybe(value: datetime | None) -> datetime | None:
    return None if value is None else aware(value)


def _actor(value: str, field_name: str) -> str:
    actor = value.strip()
    if not actor or len(actor) > USERNAME_MAX or scrub_text(actor) != actor:
        raise ReferralInvalid(field_name, f"a username of 1-{USERNAME_MAX} characters")
    return actor


def _text(value: str | None, field_name: str, *, limit: int, required: bool) -> str | None:
    cleaned = " ".join((value or "").split()) if limit <= NAME_MAX else (value or "").strip()
    if not cleaned:
        if required:
            raise ReferralInvalid(field_name, "write something")
        return None
    if len(cleaned) > limit:
        raise ReferralInvalid(field_name, f"at most {limit} characters")
    # A number typed into prose belongs in the vault, not in a referral's text.
    return scrub_text(cleaned)


# --------------------------------------------------------------------------- service


class ReferralService:
    """Creates referrals, records the unit's answers, escalates missed deadlines."""

    def __init__(
        self,
        store: Store,
        directory: ReferralDirectory,
        cases: CaseService,
        *,
        tasks: TaskPlanner | None = None,
        bus: Bus | None = None,
        clock: Clock = _utc_now,
        sweep_interval: float = 30.0,
        repair_after: timedelta = timedelta(minutes=5),
        overdue_limit: int = 50,
    ) -> None:
        self._store = store
        self.directory = directory
        self._cases = cases
        self._tasks = tasks
        self._bus = bus
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._repair_after = repair_after
        self._overdue_limit = overdue_limit
        self._overdue: list[dict[str, Any]] = []
        self._sweeper: asyncio.Task[None] | None = None

    def bind_tasks(self, tasks: TaskPlanner) -> None:
        """Give the service its scheduler, which is built with this service's handlers."""
        self._tasks = tasks

    def handlers(self) -> dict[str, Handler]:
        return {REFERRAL_DEADLINE: self.run_deadline}

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    # -- creating --------------------------------------------------------------------------

    async def refer(
        self, case_reference: str, unit_code: str, reason: str, created_by: str
    ) -> ReferralView:
        """Refer the case to a unit; its deadline is now + the unit's SLA."""
        actor = _actor(created_by, "created_by")
        unit = self.directory.unit(unit_code)
        if not unit.active:
            raise ReferralInvalid("unit", "this unit no longer takes referrals")
        text = _text(reason, "reason", limit=_REASON_MAX, required=True)
        assert text is not None
        now = self._now()
        async with self._store.transaction() as session:
            case = await self.load_case(session, case_reference)
            row = await self.create_in(session, case, unit, text, actor, now)
            referral_id = row.id
        await self.schedule_deadline(referral_id)
        await self.refresh()
        return await self.get(referral_id)

    async def load_case(self, session: AsyncSession, case_reference: str) -> Case:
        try:
            digits = parse_reference(case_reference).digits
        except InvalidReference:
            raise CaseNotFound("no case with this reference") from None
        # Locked: two referrals of one case at once queue up, so the second sees the first.
        case = await session.scalar(
            select(Case).where(Case.reference == digits).with_for_update()
        )
        if case is None:
            raise CaseNotFound("no case with this reference")
        return case

    async def create_in(
        self, session: AsyncSession, case: Case, unit: Unit, reason: str, actor: str,
        now: datetime,
    ) -> Referral:
        """The referral row and its "referred" timeline line, in the caller's transaction.

        :meth:`schedule_deadline` must follow the commit (the sweep repairs it if not).
        """
        waiting = await session.scalar(
            select(Referral.id).where(
                Referral.case_id == case.id,
                Referral.unit_code == unit.code,
                Referral.status.not_in([ReferralStatus.CLOSED.value]),
            ).limit(1)
        )
        if waiting is not None:
            raise ReferralConflict(
                f"this case already has referral {waiting} to this unit that is not closed"
            )
        row = Referral(
            case_id=case.id, unit_code=unit.code, department=unit.department.code,
            reason=reason, status=ReferralStatus.OPEN.value, created_by=actor,
            created_at=now, deadline_at=now + unit.sla, next_deadline_at=now + unit.sla,
            escalation_level=0, updated_at=now,
        )
        session.add(row)
        await session.flush()
        note = f"To {unit.name} (referral {row.id}), due within {_hours(unit.sla)}: {reason}"
        # The cases service's own step, so the case moves only where its state machine allows.
        await self._cases.add_action_in(
            session, case, CaseActionKind.REFERRED, actor, note, now
        )
        return row

    async def schedule_deadline(self, referral_id: int) -> int | None:
        """Schedule (idempotently) the task that chases the referral's current deadline."""
        if self._tasks is None:
            raise RuntimeError("ReferralService has no scheduler: call bind_tasks() first")
        async with self._store.session() as session:
            row = await session.get(Referral, referral_id)
        if (
            row is None
            or ReferralStatus(row.status) not in WAITING_FOR_UNIT
            or row.next_deadline_at is None
        ):
            return None
        return await self._tasks.schedule(
            REFERRAL_DEADLINE,
            {"referral_id": row.id, "level": row.escalation_level},
            aware(row.next_deadline_at),
            max_attempts=10,
            dedupe_key=deadline_key(row.id, row.escalation_level),
            case_id=row.case_id,
        )

    # -- the unit's answers and the supervisors' decisions ---------------------------------

    async def acknowledge(
        self, referral_id: int, acknowledged_by: str, recorded_by: str
    ) -> ReferralView:
        """The unit said it has the referral: its deadline stops running."""
        actor = _actor(recorded_by, "recorded_by")
        who = _text(acknowledged_by, "acknowledged_by", limit=NAME_MAX, required=True)
        now = self._now()
        async with self._store.transaction() as session:
            row = await self._locked(session, referral_id)
            status = ReferralStatus(row.status)
            if status is ReferralStatus.ACKNOWLEDGED or status is ReferralStatus.IN_PROGRESS:
                return await self._view_in(session, row)  # said twice: the first one counts
            if status not in WAITING_FOR_UNIT:
                raise ReferralConflict(f"a referral that is {status.value} cannot be acknowledged")
            row.status = ReferralStatus.ACKNOWLEDGED.value
            row.acknowledged_by, row.acknowledged_at = who, now
            row.acknowledgement_recorded_by = actor
            row.next_deadline_at = None
            row.updated_at = now
            late = " (after its deadline)" if now > aware(row.deadline_at) else ""
            session.add(CaseNote(
                case_id=row.case_id, at=now, author=actor,
                text=f"Referral {row.id} acknowledged by {who}{late}.",
            ))
        await self.refresh()
        return await self.get(referral_id)

    async def start_work(self, referral_id: int, actor: str) -> ReferralView:
        """The unit says it is working on it (acknowledges it, if it had not)."""
        actor = _actor(actor, "actor")
        now = self._now()
        async with self._store.transaction() as session:
            row = await self._locked(session, referral_id)
            status = ReferralStatus(row.status)
            if status is ReferralStatus.CLOSED:
                raise ReferralConflict("a closed referral cannot be in progress")
            if status is not ReferralStatus.IN_PROGRESS:
                row.status = ReferralStatus.IN_PROGRESS.value
                row.next_deadline_at = None
                row.updated_at = now
        await self.refresh()
        return await self.get(referral_id)

    async def close(self, referral_id: int, actor: str, note: str | None = None) -> ReferralView:
        actor = _actor(actor, "actor")
        text = _text(note, "note", limit=_REASON_MAX, required=False)
        now = self._now()
        async with self._store.transaction() as session:
            row = await self._locked(session, referral_id)
            if row.status != ReferralStatus.CLOSED:
                row.status = ReferralStatus.CLOSED.value
                row.closed_by, row.closed_at, row.closing_note = actor, now, text
                row.next_deadline_at = None
                row.updated_at = now
                session.add(CaseNote(
                    case_id=row.case_id, at=now, author=actor,
                    text=f"Referral {row.id} closed" + (f": {text}" if text else "."),
                ))
        await self.refresh()
        return await self.get(referral_id)

    async def escalate(self, referral_id: int, actor: str) -> ReferralView:
        """A supervisor escalates now, without waiting for the deadline."""
        actor = _actor(actor, "actor")
        async with self._store.session() as session:
            row = await session.get(Referral, referral_id)
            if row is None:
                raise ReferralNotFound("no such referral")
            level = row.escalation_level
            status = ReferralStatus(row.status)
        if status not in WAITING_FOR_UNIT:
            raise ReferralConflict(f"a referral that is {status.value} is not escalated")
        if level >= self.directory.max_escalation_level:
            raise ReferralConflict("this referral is at the last escalation level")
        if not await self._escalate(referral_id, level, actor):
            raise ReferralConflict("the referral changed meanwhile; reload it and try again")
        return await self.get(referral_id)

    # -- escalation ------------------------------------------------------------------------

    async def run_deadline(self, ctx: TaskContext) -> str:
        """The ``referral-deadline`` handler: escalate if the unit has not answered."""
        referral_id = ctx.payload.get("referral_id")
        level = ctx.payload.get("level")
        if not isinstance(referral_id, int) or not isinstance(level, int):
            raise TaskFailed("payload without referral_id and level", outcome="bad-payload")
        if await self._escalate(referral_id, level, SYSTEM_ACTOR):
            return "escalated"
        return "no-change"

    async def _escalate(self, referral_id: int, level: int, actor: str) -> bool:
        """Escalate from ``level`` to ``level + 1``; False when it is not at that level.

        The UPDATE is conditional on the level and on the unit not having answered, so of
        any number of attempts for one level exactly one changes the row; the timeline line
        is in the same transaction, so it is written exactly as often.
        """
        now = self._now()
        new_level = level + 1
        last = new_level >= self.directory.max_escalation_level
        next_deadline = None if last else now + self.directory.escalation_delay
        reference: str | None = None
        async with self._store.transaction() as session:
            result = await session.execute(
                update(Referral)
                .where(
                    Referral.id == referral_id,
                    Referral.escalation_level == level,
                    Referral.status.in_([s.value for s in WAITING_FOR_UNIT]),
                )
                .values(
                    escalation_level=new_level, status=ReferralStatus.ESCALATED.value,
                    escalated_at=now, next_deadline_at=next_deadline, updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            changed = bool(result.rowcount)  # type: ignore[attr-defined]
            row = await session.get(Referral, referral_id, populate_existing=True)
            if changed and row is not None:
                unit = self._unit_name(row.unit_code)
                why = "by hand" if actor != SYSTEM_ACTOR else "no acknowledgement by the deadline"
                session.add(CaseNote(
                    case_id=row.case_id, at=now, author=actor,
                    text=f"Referral {row.id} to {unit} escalated to level {new_level}: {why}.",
                ))
                reference = await session.scalar(
                    select(Case.reference).where(Case.id == row.case_id)
                )
        if row is None:
            return False
        # A rerun after a crash between the escalation and scheduling its next deadline
        # finds the level moved: it still makes sure the next deadline is chased.
        if row.escalation_level == new_level and row.next_deadline_at is not None:
            await self.schedule_deadline(referral_id)
        if changed:
            log.info("referral %s escalated to level %s", referral_id, new_level)
            if self._bus is not None:
                try:
                    await self._bus.publish(ReferralEscalated(
                        referral_id=referral_id, case_reference=reference or "",
                        unit_code=row.unit_code, escalation_level=new_level, actor=actor,
                    ))
                except Exception as exc:  # noqa: BLE001 - the escalation is stored; the
                    # wallboard shows it from the database at the next sweep anyway.
                    log.warning("referral %s: bus publish failed: %s", referral_id,
                                type(exc).__name__)
            await self.refresh()
        return changed

    # -- reading ---------------------------------------------------------------------------

    async def get(self, referral_id: int) -> ReferralView:
        async with self._store.session() as session:
            row = await session.get(Referral, referral_id)
            if row is None:
                raise ReferralNotFound("no such referral")
            return await self._view_in(session, row)

    async def for_case(self, case_id: int) -> list[ReferralView]:
        async with self._store.session() as session:
            rows = await session.scalars(
                select(Referral).where(Referral.case_id == case_id).order_by(Referral.id)
            )
            return [await self._view_in(session, row) for row in rows]

    async def overdue(self, *, limit: int | None = None) -> list[ReferralView]:
        """Referrals past their deadline still waiting for their unit, oldest deadline first."""
        now = self._now()
        async with self._store.session() as session:
            rows = list(await session.scalars(
                select(Referral)
                .where(
                    Referral.status.in_([s.value for s in WAITING_FOR_UNIT]),
                    Referral.deadline_at <= now,
                )
                .order_by(Referral.deadline_at, Referral.id)
                .limit(limit or self._overdue_limit)
            ))
            references = await self._references(session, {r.case_id for r in rows})
            return [self._view(row, references.get(row.case_id, ""), now) for row in rows]

    async def _references(self, session: AsyncSession, case_ids: set[int]) -> dict[int, str]:
        if not case_ids:
            return {}
        found = await session.execute(
            select(Case.id, Case.reference).where(Case.id.in_(case_ids))
        )
        return {case_id: reference for case_id, reference in found.all()}

    async def _locked(self, session: AsyncSession, referral_id: int) -> Referral:
        row = await session.scalar(
            select(Referral).where(Referral.id == referral_id).with_for_update()
        )
        if row is None:
            raise ReferralNotFound("no such referral")
        return row

    async def _view_in(self, session: AsyncSession, row: Referral) -> ReferralView:
        references = await self._references(session, {row.case_id})
        return self._view(row, references.get(row.case_id, ""), self._now())

    def _unit_name(self, code: str) -> str:
        try:
            return self.directory.unit(code).name
        except ReferralInvalid:
            return code  # a unit since removed from the directory keeps its referrals

    def _view(self, row: Referral, reference: str, now: datetime) -> ReferralView:
        status = ReferralStatus(row.status)
        deadline = aware(row.deadline_at)
        return ReferralView(
            id=row.id, case_id=row.case_id, case_reference=reference,
            unit_code=row.unit_code, unit_name=self._unit_name(row.unit_code),
            department=row.department, reason=row.reason, status=status,
            created_by=row.created_by, created_at=aware(row.created_at), deadline_at=deadline,
            next_deadline_at=_maybe(row.next_deadline_at),
            escalation_level=row.escalation_level, escalated_at=_maybe(row.escalated_at),
            acknowledged_by=row.acknowledged_by, acknowledged_at=_maybe(row.acknowledged_at),
            acknowledgement_recorded_by=row.acknowledgement_recorded_by,
            closed_by=row.closed_by, closed_at=_maybe(row.closed_at),
            closing_note=row.closing_note,
            overdue=status in WAITING_FOR_UNIT and deadline <= now,
        )

    # -- the wallboard's snapshot and the sweep --------------------------------------------

    def overdue_snapshot(self) -> list[dict[str, Any]]:
        """The overdue list as the wallboard shows it, as of the last refresh (sync).

        No reason text: a wall screen is read by whoever walks past.
        """
        return list(self._overdue)

    async def refresh(self) -> list[dict[str, Any]]:
        now = self._now()
        snapshot = [
            {
                "id": view.id,
                "case_reference": view.case_reference,
                "unit": view.unit_name,
                "department": view.department,
                "status": view.status.value,
                "escalation_level": view.escalation_level,
                "deadline_at": view.deadline_at.isoformat(),
                "overdue_minutes": int((now - view.deadline_at).total_seconds() // 60),
            }
            for view in await self.overdue()
        ]
        self._overdue = snapshot
        return snapshot

    async def sweep(self) -> int:
        """Refresh the overdue list; re-schedule deadline tasks that went missing.

        Returns how many deadline tasks it (re)scheduled. Scheduling is idempotent by the
        dedupe key, so a task that is merely late is found, not doubled.
        """
        now = self._now()
        async with self._store.session() as session:
            stranded = list(await session.scalars(
                select(Referral.id).where(
                    Referral.status.in_([s.value for s in WAITING_FOR_UNIT]),
                    Referral.next_deadline_at <= now - self._repair_after,
                ).limit(100)
            ))
        for referral_id in stranded:
            await self.schedule_deadline(referral_id)
        await self.refresh()
        return len(stranded)

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="referral-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - database away: the next sweep retries
                log.warning("referral sweep failed: %s", type(exc).__name__)
            await asyncio.sleep(self._sweep_interval)


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} hours" if hours != 1 else "1 hour"


__all__ = [
    "REFERRAL_DEADLINE",
    "Department",
    "ReferralConflict",
    "ReferralDirectory",
    "ReferralDirectoryInvalid",
    "ReferralError",
    "ReferralEscalated",
    "ReferralInvalid",
    "ReferralNotFound",
    "ReferralService",
    "ReferralView",
    "TaskPlanner",
    "Unit",
    "UNIT_CODE_MAX",
    "deadline_key",
    "directory_from_mapping",
    "load_directory",
]
