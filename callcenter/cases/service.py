"""Cases: opened at wrap-up, worked through their statuses, with their timeline.

A case knows her only as an identity id (token + sealed number). Free text an agent
types (description, notes, reasons) is scrubbed of anything that looks like a phone
number before it is stored: a harasser's number belongs in the harasser field, where
the vault tokens and seals it, never in prose that is shown, exported and searched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar, Final

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.pbx.models import CallRecord
from callcenter.store import Store

from .audit import AuditAction, AuditLog, scrub_text
from .errors import CaseError
from .identities import IdentityStore
from .models import (
    CallerBlock,
    CallerIdentity,
    Case,
    CaseAction,
    CaseActionKind,
    CaseCall,
    CaseCategory,
    CaseCounter,
    CaseHarasser,
    CaseNote,
    CaseStatus,
    CaseStatusChange,
    RiskLevel,
)
from .reference import Reference, parse_reference
from .vault import Purpose, SecretNumber, Vault

__all__ = [
    "INDIA_TIME",
    "REPEAT_HARASSER_CASES",
    "BlockView",
    "CaseChanges",
    "CaseInvalid",
    "CaseNotFound",
    "CaseService",
    "CaseSummary",
    "CaseView",
    "HarasserView",
    "InvalidTransition",
    "TimelineEntry",
    "WrapUpForm",
    "case_summary",
    "scrub_free_text",
]

#: The year of a reference is the year in India when the case was opened.
INDIA_TIME: Final = timezone(timedelta(hours=5, minutes=30), "IST")
#: A harasser named in this many complaints is flagged on every case that names him.
REPEAT_HARASSER_CASES: Final = 2
MAX_BLOCK: Final = timedelta(days=90)
MIN_BLOCK_REASON: Final = 10
_DESCRIPTION_MAX = 4000
_NOTE_MAX = 4000
_SHORT_MAX = 64
_ACTOR_MAX = 32
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?")

_TRANSITIONS: Final[dict[CaseStatus, frozenset[CaseStatus]]] = {
    CaseStatus.OPEN: frozenset(
        {CaseStatus.IN_PROGRESS, CaseStatus.REFERRED, CaseStatus.RESOLVED, CaseStatus.CLOSED}
    ),
    CaseStatus.IN_PROGRESS: frozenset(
        {CaseStatus.REFERRED, CaseStatus.RESOLVED, CaseStatus.CLOSED}
    ),
    CaseStatus.REFERRED: frozenset(
        {CaseStatus.IN_PROGRESS, CaseStatus.RESOLVED, CaseStatus.CLOSED}
    ),
    CaseStatus.RESOLVED: frozenset({CaseStatus.IN_PROGRESS, CaseStatus.CLOSED}),
    # Reopened when she calls again about the same complaint.
    CaseStatus.CLOSED: frozenset({CaseStatus.IN_PROGRESS}),
}

# Actions that also move the case, when the move is allowed from where it stands.
_ACTION_STATUS: Final = {
    CaseActionKind.REFERRED: CaseStatus.REFERRED,
    CaseActionKind.FORWARDED_112: CaseStatus.REFERRED,
    CaseActionKind.CLOSED_AS_PRANK: CaseStatus.CLOSED,
}

_STATUS_COLUMN: Final = {
    CaseStatus.OPEN: "opened_at",
    CaseStatus.IN_PROGRESS: "in_progress_at",
    CaseStatus.REFERRED: "referred_at",
    CaseStatus.RESOLVED: "resolved_at",
    CaseStatus.CLOSED: "closed_at",
}


# --------------------------------------------------------------------------- errors


class CaseNotFound(CaseError, LookupError):
    code: ClassVar[str] = "case_not_found"


class CaseInvalid(CaseError, ValueError):
    """A field of a case form is wrong; ``field`` names it for the console."""

    code: ClassVar[str] = "case_invalid"

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class InvalidTransition(CaseError):
    code: ClassVar[str] = "case_invalid_transition"


# --------------------------------------------------------------------------- forms


@dataclass(frozen=True, slots=True)
class WrapUpForm:
    """What the agent fills in after the call. Empty fields take the IVR's values."""

    category: CaseCategory | str | None = None
    sub_category: str | None = None
    description: str = ""
    language: str | None = None
    district: str | None = None
    risk: RiskLevel | str | None = None
    harasser_numbers: Sequence[str] = ()
    actions: Sequence[CaseActionKind | str] = ()
    note: str | None = None
    assign_to: str | None = None  # default: the agent who took the call


@dataclass(frozen=True, slots=True)
class CaseChanges:
    """Fields to change on a case; None leaves a field as it is."""

    category: CaseCategory | str | None = None
    sub_category: str | None = None
    description: str | None = None
    language: str | None = None
    district: str | None = None
    risk: RiskLevel | str | None = None
    assigned_to: str | None = None


# --------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class CaseSummary:
    id: int
    reference: str
    status: CaseStatus
    category: CaseCategory
    sub_category: str | None
    risk: RiskLevel
    district: str | None
    language: str | None
    assigned_to: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    caller_identity_id: int | None
    caller_token: str | None

    @property
    def reference_grouped(self) -> str:
        return parse_reference(self.reference).grouped()


@dataclass(frozen=True, slots=True)
class HarasserView:
    identity_id: int
    token: str
    complaint_count: int

    @property
    def repeat(self) -> bool:
        """Named in several complaints: the console flags him."""
        return self.complaint_count >= REPEAT_HARASSER_CASES


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    actor: str
    kind: str  # "status" | "action" | "note"
    what: str  # the new status, the action kind, or "note"
    text: str | None = None


@dataclass(frozen=True, slots=True)
class CaseView:
    summary: CaseSummary
    description: str
    status_times: dict[CaseStatus, datetime | None]
    harassers: tuple[HarasserView, ...]
    call_ids: tuple[int, ...]
    timeline: tuple[TimelineEntry, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class BlockView:
    id: int
    identity_id: int
    reason: str
    blocked_by: str
    blocked_at: datetime
    expires_at: datetime
    lifted_at: datetime | None


# --------------------------------------------------------------------------- helpers


def _aware(value: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive; every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    # SQLite stores a datetime's wall time without its offset: store UTC only, so that
    # comparisons in SQL (block expiry, date ranges) mean the same on both databases.
    return _aware(value).astimezone(UTC)


def _maybe(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def scrub_free_text(text: str, *, limit: int, field_name: str) -> str:
    """Trimmed, length-checked text with phone numbers replaced by ``[number]``."""
    cleaned = text.strip()
    if len(cleaned) > limit:
        raise CaseInvalid(field_name, f"at most {limit} characters")
    return scrub_text(cleaned)


def _short(value: str | None, field_name: str) -> str | None:
    if value is None:
        return None
    cleaned = " ".join(value.split())
    if not cleaned:
        return None
    return scrub_free_text(cleaned, limit=_SHORT_MAX, field_name=field_name)


def _enum(kind: type[Any], value: object, field_name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(v.value for v in kind)
        raise CaseInvalid(field_name, f"must be one of {choices}") from None


def _language(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    code = value.strip()
    if not _LANGUAGE.fullmatch(code):
        raise CaseInvalid("language", "an ISO 639 code such as hi or en")
    return code


def _actor(value: str, field_name: str = "agent") -> str:
    actor = value.strip()
    if not actor or len(actor) > _ACTOR_MAX or scrub_text(actor) != actor:
        raise CaseInvalid(field_name, f"a username of 1-{_ACTOR_MAX} characters")
    return actor


def case_summary(case: Case, token: str | None) -> CaseSummary:
    return CaseSummary(
        id=case.id,
        reference=case.reference,
        status=CaseStatus(case.status),
        category=CaseCategory(case.category),
        sub_category=case.sub_category,
        risk=RiskLevel(case.risk),
        district=case.district,
        language=case.language,
        assigned_to=case.assigned_to,
        created_at=_aware(case.created_at),
        updated_at=_aware(case.updated_at),
        closed_at=_maybe(case.closed_at),
        caller_identity_id=case.caller_identity_id,
        caller_token=token,
    )


async def next_sequence(session: AsyncSession, year: int) -> int:
    """The next complaint number of ``year``, inside the caller's transaction.

    One upsert statement: the first case of a year inserts the row, every later one
    increments it, and the row lock (PostgreSQL) or write lock (SQLite) it takes makes
    concurrent creators queue up until this transaction ends. A rolled-back case
    rolls its number back with it, so the sequence has no gaps.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(CaseCounter)
        .values(year=year, last_seq=1)
        .on_conflict_do_update(
            index_elements=[CaseCounter.year],
            set_={"last_seq": CaseCounter.last_seq + 1},
        )
        .returning(CaseCounter.last_seq)
    )
    return int((await session.execute(statement)).scalar_one())


# --------------------------------------------------------------------------- service


class CaseService:
    """Opens, updates and reads cases; names harassers; blocks abusive callers."""

    def __init__(
        self,
        store: Store,
        vault: Vault,
        audit: AuditLog,
        *,
        clock: Callable[[], datetime] | None = None,
        reference_tz: timezone = INDIA_TIME,
    ) -> None:
        self._store = store
        self._vault = vault
        self._audit = audit
        self._identities = IdentityStore(store)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._tz = reference_tz

    def _now(self) -> datetime:
        return _utc(self._clock())

    # -- creating

    async def create_from_wrapup(
        self, call: CallRecord | int, form: WrapUpForm, agent: str
    ) -> CaseView:
        """Open the case of a call from the agent's wrap-up form.

        Idempotent per call: a form submitted twice (a retry, a double click, two
        instances) gives the case the first submit opened.
        """
        agent = _actor(agent)
        call_id = call if isinstance(call, int) else call.id
        now = self._now()
        existing = await self._case_of_call(call_id)
        if existing is not None:
            return existing
        # Harassers first, each in its own short transaction: the vault rejects a
        # mistyped number before anything is written, and the identity upsert is
        # idempotent, so a case that then fails to save leaves nothing wrong behind.
        harassers = [await self._harasser_identity(raw, now) for raw in form.harasser_numbers]
        actions = [_enum(CaseActionKind, a, "actions") for a in form.actions]
        description = scrub_free_text(
            form.description, limit=_DESCRIPTION_MAX, field_name="description"
        )
        note = (
            scrub_free_text(form.note, limit=_NOTE_MAX, field_name="note")
            if form.note and form.note.strip() else None
        )
        try:
            async with self._store.transaction() as session:
                record = await session.get(CallRecord, call_id)
                if record is None:
                    raise CaseNotFound(f"no call record {call_id}")
                category = form.category or record.category
                if category is None or category not in set(CaseCategory):
                    raise CaseInvalid("category", "choose the complaint's category")
                risk = form.risk or (
                    record.risk if record.risk in set(RiskLevel) else RiskLevel.MEDIUM
                )
                year = now.astimezone(self._tz).year
                # Last before the inserts: the counter's lock is held until commit.
                seq = await next_sequence(session, year)
                case = Case(
                    reference=Reference(year, seq).digits,
                    year=year,
                    seq=seq,
                    origin_call_id=call_id,
                    caller_identity_id=record.caller_identity_id,
                    category=_enum(CaseCategory, category, "category").value,
                    sub_category=_short(form.sub_category, "sub_category"),
                    description=description,
                    language=_language(form.language) or record.language,
                    district=_short(form.district, "district"),
                    risk=_enum(RiskLevel, risk, "risk").value,
                    status=CaseStatus.OPEN.value,
                    assigned_to=_actor(form.assign_to, "assign_to") if form.assign_to else agent,
                    created_by=agent,
                    created_at=now,
                    updated_at=now,
                    opened_at=now,
                )
                session.add(case)
                await session.flush()
                session.add(CaseCall(case_id=case.id, call_record_id=call_id, linked_at=now,
                                     linked_by=agent))
                session.add(CaseStatusChange(case_id=case.id, from_status=None,
                                             to_status=CaseStatus.OPEN.value, at=now, actor=agent))
                for identity_id in dict.fromkeys(harassers):
                    session.add(CaseHarasser(case_id=case.id, identity_id=identity_id,
                                             named_at=now, named_by=agent))
                if note is not None:
                    session.add(CaseNote(case_id=case.id, at=now, author=agent, text=note))
                await session.flush()
                for kind in actions:
                    await self.add_action_in(session, case, kind, agent, None, now)
                case_id = case.id
        except IntegrityError:
            # Another submit of the same form won the race; its case is the case.
            existing = await self._case_of_call(call_id)
            if existing is None:
                raise
            return existing
        return await self._view(case_id)

    async def _harasser_identity(self, raw: str | SecretNumber, at: datetime) -> int:
        try:
            entry = self._vault.admit(raw, Purpose.HARASSER)
        except ValueError as exc:  # InvalidNumber: says why, never repeats the number
            raise CaseInvalid("harasser_numbers", str(exc)) from None
        return await self._identities.remember(entry, at=at)

    async def _case_of_call(self, call_id: int) -> CaseView | None:
        async with self._store.session() as session:
            case_id = await session.scalar(select(Case.id).where(Case.origin_call_id == call_id))
        return None if case_id is None else await self._view(case_id)

    # -- changing

    async def update(self, reference: str, changes: CaseChanges, agent: str) -> CaseView:
        agent = _actor(agent)
        now = self._now()
        async with self._store.transaction() as session:
            case = await self._load(session, reference)
            if changes.category is not None:
                case.category = _enum(CaseCategory, changes.category, "category").value
            if changes.sub_category is not None:
                case.sub_category = _short(changes.sub_category, "sub_category")
            if changes.description is not None:
                case.description = scrub_free_text(
                    changes.description, limit=_DESCRIPTION_MAX, field_name="description"
                )
            if changes.language is not None:
                case.language = _language(changes.language)
            if changes.district is not None:
                case.district = _short(changes.district, "district")
            if changes.risk is not None:
                case.risk = _enum(RiskLevel, changes.risk, "risk").value
            if changes.assigned_to is not None:
                case.assigned_to = _actor(changes.assigned_to, "assigned_to")
            case.updated_at = now
            case_id = case.id
        return await self._view(case_id)

    async def add_note(self, reference: str, text: str, agent: str) -> TimelineEntry:
        agent = _actor(agent)
        body = scrub_free_text(text, limit=_NOTE_MAX, field_name="note")
        if not body:
            raise CaseInvalid("note", "write something")
        now = self._now()
        async with self._store.transaction() as session:
            case = await self._load(session, reference)
            session.add(CaseNote(case_id=case.id, at=now, author=agent, text=body))
            case.updated_at = now
        return TimelineEntry(now, agent, "note", "note", body)

    async def add_action(
        self,
        reference: str,
        kind: CaseActionKind | str,
        agent: str,
        note: str | None = None,
    ) -> TimelineEntry:
        """Record what was done; referral and prank closure also move the status."""
        agent = _actor(agent)
        action = _enum(CaseActionKind, kind, "action")
        text = scrub_free_text(note, limit=_NOTE_MAX, field_name="note") if note else None
        now = self._now()
        async with self._store.transaction() as session:
            case = await self._load(session, reference)
            await self.add_action_in(session, case, action, agent, text, now)
        return TimelineEntry(now, agent, "action", action.value, text)

    async def add_action_in(
        self,
        session: AsyncSession,
        case: Case,
        action: CaseActionKind,
        agent: str,
        note: str | None,
        now: datetime,
    ) -> None:
        """Add ``action`` to the timeline inside the caller's transaction (a referral's row
        and its "referred" line commit together), moving the status where allowed."""
        session.add(CaseAction(case_id=case.id, kind=action.value, at=now, actor=agent,
                               note=note))
        target = _ACTION_STATUS.get(action)
        current = CaseStatus(case.status)
        if target is not None and target in _TRANSITIONS[current]:
            await self._move(session, case, current, target, agent, None, now)
        case.updated_at = now

    async def change_status(
        self,
        reference: str,
        status: CaseStatus | str,
        agent: str,
        reason: str | None = None,
    ) -> CaseSummary:
        agent = _actor(agent)
        target = _enum(CaseStatus, status, "status")
        text = scrub_free_text(reason, limit=_NOTE_MAX, field_name="reason") if reason else None
        now = self._now()
        async with self._store.transaction() as session:
            case = await self._load(session, reference)
            current = CaseStatus(case.status)
            if target not in _TRANSITIONS[current]:
                raise InvalidTransition(
                    f"a case that is {current.value} cannot become {target.value}"
                )
            await self._move(session, case, current, target, agent, text, now)
            return case_summary(case, await self._token(session, case.caller_identity_id))

    async def _move(
        self,
        session: AsyncSession,
        case: Case,
        current: CaseStatus,
        target: CaseStatus,
        agent: str,
        reason: str | None,
        now: datetime,
    ) -> None:
        # Conditional on the status this transaction read: of two agents moving the
        # same case at once, the second finds it moved and is told, not overwritten.
        moved = await session.execute(
            update(Case)
            .where(Case.id == case.id, Case.status == current.value)
            .values({"status": target.value, _STATUS_COLUMN[target]: now, "updated_at": now})
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise InvalidTransition("the case was changed meanwhile; reload it and try again")
        session.add(CaseStatusChange(case_id=case.id, from_status=current.value,
                                     to_status=target.value, at=now, actor=agent,
                                     reason=reason))
        case.status = target.value
        setattr(case, _STATUS_COLUMN[target], now)
        case.updated_at = now

    async def link_call(self, reference: str, call_record_id: int, agent: str) -> CaseView:
        """Add a later call (she called again about it) to the case. Idempotent."""
        agent = _actor(agent)
        now = self._now()
        async with self._store.transaction() as session:
            case = await self._load(session, reference)
            if await session.get(CallRecord, call_record_id) is None:
                raise CaseNotFound(f"no call record {call_record_id}")
            if await session.get(CaseCall, (case.id, call_record_id)) is None:
                session.add(CaseCall(case_id=case.id, call_record_id=call_record_id,
                                     linked_at=now, linked_by=agent))
                case.updated_at = now
            case_id = case.id
        return await self._view(case_id)

    async def name_harasser(
        self, reference: str, number: str | SecretNumber, agent: str
    ) -> HarasserView:
        agent = _actor(agent)
        now = self._now()
        identity_id = await self._harasser_identity(number, now)
        async with self._store.transaction() as session:
            case = await self._load(session, reference)
            if await session.get(CaseHarasser, (case.id, identity_id)) is None:
                session.add(CaseHarasser(case_id=case.id, identity_id=identity_id,
                                         named_at=now, named_by=agent))
                case.updated_at = now
        async with self._store.session() as session:
            return (await self._harassers(session, [identity_id]))[0]

    # -- reading

    async def get_by_reference(self, reference: str) -> CaseView:
        async with self._store.session() as session:
            case = await self._load(session, reference)
            case_id = case.id
        return await self._view(case_id)

    async def earlier_cases(
        self, caller_identity_id: int, *, limit: int = 10
    ) -> list[CaseSummary]:
        """Her cases, newest first: what the screen-pop shows before the agent answers."""
        async with self._store.session() as session:
            token = await self._token(session, caller_identity_id)
            rows = await session.scalars(
                select(Case)
                .where(Case.caller_identity_id == caller_identity_id)
                .order_by(Case.created_at.desc(), Case.id.desc())
                .limit(limit)
            )
            return [case_summary(case, token) for case in rows]

    async def harasser_complaint_count(self, identity_id: int) -> int:
        """In how many complaints this harasser is named."""
        async with self._store.session() as session:
            count = await session.scalar(
                select(func.count(func.distinct(CaseHarasser.case_id))).where(
                    CaseHarasser.identity_id == identity_id
                )
            )
            return int(count or 0)

    async def _load(self, session: AsyncSession, reference: str) -> Case:
        digits = parse_reference(reference).digits  # InvalidReference for a typo
        case = await session.scalar(select(Case).where(Case.reference == digits))
        if case is None:
            raise CaseNotFound("no case with this reference")
        return case

    async def _token(self, session: AsyncSession, identity_id: int | None) -> str | None:
        if identity_id is None:
            return None
        return await session.scalar(
            select(CallerIdentity.token_code).where(CallerIdentity.id == identity_id)
        )

    async def _harassers(
        self, session: AsyncSession, identity_ids: Sequence[int]
    ) -> list[HarasserView]:
        if not identity_ids:
            return []
        counts = dict(
            (
                await session.execute(
                    select(
                        CaseHarasser.identity_id, func.count(func.distinct(CaseHarasser.case_id))
                    )
                    .where(CaseHarasser.identity_id.in_(identity_ids))
                    .group_by(CaseHarasser.identity_id)
                )
            ).all()
        )
        tokens = dict(
            (
                await session.execute(
                    select(CallerIdentity.id, CallerIdentity.token_code).where(
                        CallerIdentity.id.in_(identity_ids)
                    )
                )
            ).all()
        )
        return [
            HarasserView(i, tokens.get(i, ""), int(counts.get(i, 0))) for i in identity_ids
        ]

    async def _view(self, case_id: int) -> CaseView:
        async with self._store.session() as session:
            case = await session.get(Case, case_id)
            if case is None:
                raise CaseNotFound("no such case")
            token = await self._token(session, case.caller_identity_id)
            harasser_ids = list(
                await session.scalars(
                    select(CaseHarasser.identity_id)
                    .where(CaseHarasser.case_id == case_id)
                    .order_by(CaseHarasser.named_at, CaseHarasser.identity_id)
                )
            )
            call_ids = tuple(
                await session.scalars(
                    select(CaseCall.call_record_id)
                    .where(CaseCall.case_id == case_id)
                    .order_by(CaseCall.linked_at, CaseCall.call_record_id)
                )
            )
            timeline: list[tuple[datetime, int, int, TimelineEntry]] = []
            for change in await session.scalars(
                select(CaseStatusChange).where(CaseStatusChange.case_id == case_id)
            ):
                at = _aware(change.at)
                timeline.append((at, 0, change.id, TimelineEntry(
                    at, change.actor, "status", change.to_status, change.reason)))
            for action in await session.scalars(
                select(CaseAction).where(CaseAction.case_id == case_id)
            ):
                at = _aware(action.at)
                timeline.append((at, 1, action.id, TimelineEntry(
                    at, action.actor, "action", action.kind, action.note)))
            for note in await session.scalars(
                select(CaseNote).where(CaseNote.case_id == case_id)
            ):
                at = _aware(note.at)
                timeline.append((at, 2, note.id, TimelineEntry(
                    at, note.author, "note", "note", note.text)))
            timeline.sort(key=lambda item: item[:3])
            return CaseView(
                summary=case_summary(case, token),
                description=case.description,
                status_times={
                    status: _maybe(getattr(case, column))
                    for status, column in _STATUS_COLUMN.items()
                },
                harassers=tuple(await self._harassers(session, harasser_ids)),
                call_ids=call_ids,
                timeline=tuple(entry for *_key, entry in timeline),
            )

    # -- blocking abusive callers

    async def block_caller(
        self,
        identity_id: int,
        *,
        reason: str,
        blocked_by: str,
        period: timedelta,
    ) -> BlockView:
        """Turn a caller marked abusive away for ``period`` (at most :data:`MAX_BLOCK`).

        Never for good: a prank caller today may be a woman in danger next year.
        """
        actor = _actor(blocked_by, "blocked_by")
        text = scrub_free_text(reason, limit=_NOTE_MAX, field_name="reason")
        if len(text) < MIN_BLOCK_REASON:
            raise CaseInvalid("reason", f"at least {MIN_BLOCK_REASON} characters")
        if not timedelta(0) < period <= MAX_BLOCK:
            raise CaseInvalid("period", f"between a minute and {MAX_BLOCK.days} days")
        now = self._now()
        async with self._store.transaction() as session:
            identity = await session.get(CallerIdentity, identity_id)
            if identity is None or identity.purpose != Purpose.CALLER.value:
                raise CaseInvalid("identity", "only a caller's identity can be blocked")
            row = CallerBlock(identity_id=identity_id, reason=text, blocked_by=actor,
                              blocked_at=now, expires_at=now + period)
            session.add(row)
            await session.flush()
            await self._audit.append(
                session, actor=actor, action=AuditAction.CALLER_BLOCKED,
                subject=f"identity:{identity_id}",
                details={"block_id": row.id, "reason": text, "expires_at": now + period},
                at=now,
            )
            return _block_view(row)

    async def lift_block(self, block_id: int, *, lifted_by: str) -> BlockView:
        actor = _actor(lifted_by, "lifted_by")
        now = self._now()
        async with self._store.transaction() as session:
            row = await session.get(CallerBlock, block_id)
            if row is None:
                raise CaseNotFound("no such block")
            if row.lifted_at is None:
                row.lifted_at, row.lifted_by = now, actor
                await session.flush()
                await self._audit.append(
                    session, actor=actor, action=AuditAction.CALLER_UNBLOCKED,
                    subject=f"identity:{row.identity_id}", details={"block_id": row.id},
                    at=now,
                )
            return _block_view(row)

    async def active_block(
        self, identity_id: int, now: datetime | None = None
    ) -> BlockView | None:
        at = _utc(now) if now is not None else self._now()
        async with self._store.session() as session:
            row = await session.scalar(
                select(CallerBlock)
                .where(
                    CallerBlock.identity_id == identity_id,
                    CallerBlock.lifted_at.is_(None),
                    CallerBlock.blocked_at <= at,
                    CallerBlock.expires_at > at,
                )
                .order_by(CallerBlock.expires_at.desc())
                .limit(1)
            )
            return None if row is None else _block_view(row)

    async def is_blocked(self, identity_id: int, now: datetime | None = None) -> bool:
        """For the IVR: whether this caller is turned away right now."""
        return await self.active_block(identity_id, now) is not None


def _block_view(row: CallerBlock) -> BlockView:
    return BlockView(
        row.id, row.identity_id, row.reason, row.blocked_by, _aware(row.blocked_at),
        _aware(row.expires_at), _maybe(row.lifted_at),
    )
