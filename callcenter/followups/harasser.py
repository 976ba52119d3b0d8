"""Graded action against a harasser: 1090's practice, one level at a time.

1. a warning call: a woman police officer calls him;
2. a counselling call to his family, friends or relatives;
3. an FIR through the local police: a referral to the station's women's help desk.

Each step is an action with an owner (the officer who makes the call) and an outcome
(done, unreachable, refused, wrong number, cancelled), written to the case's timeline.
A repeat harasser starts higher: when the next action is proposed, the level is chosen from
what is known about *him* across every complaint (his vault token links them):

* named in :data:`~callcenter.cases.service.REPEAT_HARASSER_CASES` or more complaints:
  at least level 2 (he has already been told once, in effect, by being complained of twice);
* a previous action on him that was done, or that he refused: one level above it.

The officer dials him from the vault through the normal reveal path; nothing here holds
or shows his number: he appears as his identity id and token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Final

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.agents.models import AgentAccount
from callcenter.cases.audit import scrub_text
from callcenter.cases.models import (
    CallerIdentity,
    CaseAction,
    CaseActionKind,
    CaseHarasser,
    CaseNote,
)
from callcenter.cases.service import REPEAT_HARASSER_CASES
from callcenter.store import Store

from .models import aware
from .referral_models import (
    USERNAME_MAX,
    HarasserAction,
    HarasserActionKind,
    HarasserActionStatus,
)
from .referrals import (
    ReferralConflict,
    ReferralError,
    ReferralInvalid,
    ReferralService,
    Unit,
)

KIND_OF_LEVEL: Final = {
    1: HarasserActionKind.WARNING_CALL,
    2: HarasserActionKind.FAMILY_COUNSELLING,
    3: HarasserActionKind.FIR_REFERRAL,
}
_WORDS: Final = {
    HarasserActionKind.WARNING_CALL: "warning call",
    HarasserActionKind.FAMILY_COUNSELLING: "family/friends/relatives counselling call",
    HarasserActionKind.FIR_REFERRAL: "FIR referral to the police station",
}
#: Outcomes after which the next step goes one level up.
_COUNTS_AS_TRIED: Final = frozenset({HarasserActionStatus.DONE, HarasserActionStatus.REFUSED})
#: Roles whose members make these calls.
_OFFICER_ROLES: Final = frozenset({"agent", "counsellor", "supervisor"})
_NOTE_MAX = 4000

Clock = Callable[[], datetime]


class HarasserActionNotFound(ReferralError, LookupError):
    code: ClassVar[str] = "harasser_action_not_found"


@dataclass(frozen=True, slots=True)
class LevelChoice:
    level: int
    basis: str


@dataclass(frozen=True, slots=True)
class HarasserActionView:
    id: int
    case_id: int
    harasser_token: str
    level: int
    kind: HarasserActionKind
    status: HarasserActionStatus
    owner: str
    basis: str
    created_by: str
    created_at: datetime
    due_at: datetime
    completed_at: datetime | None
    completed_by: str | None
    outcome_note: str | None
    referral_id: int | None


def _actor(value: str, field_name: str) -> str:
    actor = value.strip()
    if not actor or len(actor) > USERNAME_MAX or scrub_text(actor) != actor:
        raise ReferralInvalid(field_name, f"a username of 1-{USERNAME_MAX} characters")
    return actor


def _note(value: str | None, field_name: str) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > _NOTE_MAX:
        raise ReferralInvalid(field_name, f"at most {_NOTE_MAX} characters")
    return scrub_text(text)


class HarasserActionService:
    """Proposes the next step against a harasser, and records how it went."""

    def __init__(
        self,
        store: Store,
        referrals: ReferralService,
        *,
        clock: Clock | None = None,
        default_due: timedelta = timedelta(hours=48),
    ) -> None:
        self._store = store
        self._referrals = referrals
        self._clock = clock or (lambda: datetime.now(UTC))
        self._default_due = default_due

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    async def next_level(self, session: AsyncSession, identity_id: int) -> LevelChoice:
        """The level his next action starts at, and why (see the module's rules)."""
        complaints = int(await session.scalar(
            select(func.count(func.distinct(CaseHarasser.case_id))).where(
                CaseHarasser.identity_id == identity_id
            )
        ) or 0)
        tried = await session.scalar(
            select(func.max(HarasserAction.level)).where(
                HarasserAction.identity_id == identity_id,
                HarasserAction.status.in_([s.value for s in _COUNTS_AS_TRIED]),
            )
        )
        level, basis = 1, "first action against him"
        if complaints >= REPEAT_HARASSER_CASES:
            level, basis = 2, f"repeat harasser: named in {complaints} complaints"
        if tried is not None and tried + 1 > level:
            level, basis = tried + 1, f"level {tried} was already done or refused"
        if tried is not None and tried >= 3:
            basis = "level 3 was already done or refused; level 3 again"
        return LevelChoice(min(level, 3), basis)

    async def propose(
        self,
        case_reference: str,
        harasser_token: str,
        owner: str,
        proposed_by: str,
        *,
        level: int | None = None,
        unit_code: str | None = None,
        due_in: timedelta | None = None,
        note: str | None = None,
    ) -> HarasserActionView:
        """Assign the next action against a harasser of this case to an officer.

        Idempotent: while an action on him in this case is still assigned, proposing again
        returns it instead of starting a second one. Level 3 creates the FIR referral to
        the station's women's help desk (the case district's, or ``unit_code``) in the
        same transaction.
        """
        owner = _actor(owner, "owner")
        actor = _actor(proposed_by, "proposed_by")
        text = _note(note, "note")
        if level is not None and level not in KIND_OF_LEVEL:
            raise ReferralInvalid("level", "1 (warning call), 2 (family) or 3 (FIR)")
        wait = due_in if due_in is not None else self._default_due
        if not timedelta(minutes=1) <= wait <= timedelta(days=60):
            raise ReferralInvalid("due_in", "between a minute and 60 days")
        now = self._now()
        referral_id: int | None = None
        async with self._store.transaction() as session:
            case = await self._referrals.load_case(session, case_reference)
            identity_id = await self._harasser_of(session, case.id, harasser_token)
            await self._require_officer(session, owner)
            existing = await session.scalar(
                select(HarasserAction).where(
                    HarasserAction.case_id == case.id,
                    HarasserAction.identity_id == identity_id,
                    HarasserAction.status == HarasserActionStatus.ASSIGNED.value,
                ).limit(1)
            )
            if existing is not None:
                return await self._view(session, existing)
            if level is None:
                choice = await self.next_level(session, identity_id)
            else:
                choice = LevelChoice(level, f"chosen by {actor}")
            kind = KIND_OF_LEVEL[choice.level]
            token = harasser_token.strip().upper()
            row = HarasserAction(
                case_id=case.id, identity_id=identity_id, level=choice.level,
                kind=kind.value, status=HarasserActionStatus.ASSIGNED.value, owner=owner,
                basis=choice.basis[:128], created_by=actor, created_at=now,
                due_at=now + wait, updated_at=now,
            )
            if kind is HarasserActionKind.FIR_REFERRAL:
                unit = self._station(unit_code, case.district)
                reason = f"FIR against harasser {token}" + (f": {text}" if text else "")
                referral = await self._referrals.create_in(session, case, unit, reason, actor,
                                                           now)
                row.referral_id = referral_id = referral.id
            session.add(row)
            await session.flush()
            session.add(CaseNote(
                case_id=case.id, at=now, author=actor,
                text=f"Level {choice.level} against harasser {token} ({_WORDS[kind]}) "
                     f"assigned to {owner}: {choice.basis}." + (f" {text}" if text else ""),
            ))
            action_id = row.id
        if referral_id is not None:
            await self._referrals.schedule_deadline(referral_id)
            await self._referrals.refresh()
        return await self.get(action_id)

    async def record_outcome(
        self,
        action_id: int,
        outcome: HarasserActionStatus | str,
        actor: str,
        note: str | None = None,
    ) -> HarasserActionView:
        """How it went. Recorded once: the same outcome again is a no-op, another a conflict."""
        actor = _actor(actor, "actor")
        try:
            result = HarasserActionStatus(outcome)
        except ValueError:
            choices = ", ".join(s.value for s in HarasserActionStatus
                                if s is not HarasserActionStatus.ASSIGNED)
            raise ReferralInvalid("outcome", f"one of {choices}") from None
        if result is HarasserActionStatus.ASSIGNED:
            raise ReferralInvalid("outcome", "an outcome, not assigned")
        text = _note(note, "note")
        now = self._now()
        async with self._store.transaction() as session:
            row = await session.get(HarasserAction, action_id)
            if row is None:
                raise HarasserActionNotFound("no such harasser action")
            if row.status != HarasserActionStatus.ASSIGNED:
                if row.status == result.value:
                    return await self._view(session, row)
                raise ReferralConflict(f"its outcome is already recorded: {row.status}")
            # Conditional: of two officers saving at once, one outcome is the outcome.
            moved = await session.execute(
                update(HarasserAction)
                .where(HarasserAction.id == action_id,
                       HarasserAction.status == HarasserActionStatus.ASSIGNED.value)
                .values(status=result.value, completed_at=now, completed_by=actor,
                        outcome_note=text, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if not moved.rowcount:  # type: ignore[attr-defined]
                raise ReferralConflict("its outcome was recorded meanwhile; reload it")
            kind = HarasserActionKind(row.kind)
            token = await self._token(session, row.identity_id)
            line = f"{_WORDS[kind].capitalize()} to harasser {token}: {result.value}" + (
                f". {text}" if text else "."
            )
            timeline_kind = {
                HarasserActionKind.WARNING_CALL: CaseActionKind.WARNING_CALL,
                HarasserActionKind.FAMILY_COUNSELLING: CaseActionKind.FAMILY_COUNSELLING,
            }.get(kind)
            if timeline_kind is not None:
                session.add(CaseAction(case_id=row.case_id, kind=timeline_kind.value, at=now,
                                       actor=actor, note=line))
            else:
                # The FIR's own line is the referral's "referred"; this is its result.
                session.add(CaseNote(case_id=row.case_id, at=now, author=actor, text=line))
        return await self.get(action_id)

    # -- reading ---------------------------------------------------------------------------

    async def get(self, action_id: int) -> HarasserActionView:
        async with self._store.session() as session:
            row = await session.get(HarasserAction, action_id)
            if row is None:
                raise HarasserActionNotFound("no such harasser action")
            return await self._view(session, row)

    async def for_case(self, case_id: int) -> list[HarasserActionView]:
        async with self._store.session() as session:
            rows = await session.scalars(
                select(HarasserAction).where(HarasserAction.case_id == case_id)
                .order_by(HarasserAction.id)
            )
            return [await self._view(session, row) for row in rows]

    async def assigned_to(self, owner: str) -> list[HarasserActionView]:
        """An officer's open actions, soonest due first."""
        async with self._store.session() as session:
            rows = await session.scalars(
                select(HarasserAction).where(
                    HarasserAction.owner == owner,
                    HarasserAction.status == HarasserActionStatus.ASSIGNED.value,
                ).order_by(HarasserAction.due_at, HarasserAction.id)
            )
            return [await self._view(session, row) for row in rows]

    async def overdue(self) -> list[HarasserActionView]:
        """Open actions past their due time, most overdue first: the supervisors' list of
        warnings and counselling calls nobody has made yet."""
        async with self._store.session() as session:
            rows = await session.scalars(
                select(HarasserAction).where(
                    HarasserAction.status == HarasserActionStatus.ASSIGNED.value,
                    HarasserAction.due_at < self._now(),
                ).order_by(HarasserAction.due_at, HarasserAction.id)
            )
            return [await self._view(session, row) for row in rows]

    # -- helpers ---------------------------------------------------------------------------

    def _station(self, unit_code: str | None, district: str | None) -> Unit:
        directory = self._referrals.directory
        if unit_code:
            unit = directory.unit(unit_code)
            if unit.department.code != directory.fir_department:
                raise ReferralInvalid("unit", "an FIR goes to a police station's help desk")
            return unit
        unit = directory.police_desk_for(district)
        if unit is None:
            raise ReferralInvalid(
                "unit", "name the police station: the case's district has none or several"
            )
        return unit

    async def _harasser_of(self, session: AsyncSession, case_id: int, token: str) -> int:
        code = token.strip().upper()
        ids = list(await session.scalars(
            select(CaseHarasser.identity_id)
            .join(CallerIdentity, CallerIdentity.id == CaseHarasser.identity_id)
            .where(CaseHarasser.case_id == case_id, CallerIdentity.token_code == code)
        ))
        if len(ids) != 1:
            raise ReferralInvalid("harasser_token", "not a harasser named in this case")
        return ids[0]

    async def _require_officer(self, session: AsyncSession, owner: str) -> None:
        role = await session.scalar(
            select(AgentAccount.role).where(AgentAccount.username == owner,
                                            AgentAccount.enabled.is_(True))
        )
        if role not in _OFFICER_ROLES:
            raise ReferralInvalid("owner", "an enabled officer's username")

    async def _token(self, session: AsyncSession, identity_id: int) -> str:
        token = await session.scalar(
            select(CallerIdentity.token_code).where(CallerIdentity.id == identity_id)
        )
        return token or "?"

    async def _view(self, session: AsyncSession, row: HarasserAction) -> HarasserActionView:
        return HarasserActionView(
            id=row.id, case_id=row.case_id,
            harasser_token=await self._token(session, row.identity_id), level=row.level,
            kind=HarasserActionKind(row.kind), status=HarasserActionStatus(row.status),
            owner=row.owner, basis=row.basis, created_by=row.created_by,
            created_at=aware(row.created_at), due_at=aware(row.due_at),
            completed_at=None if row.completed_at is None else aware(row.completed_at),
            completed_by=row.completed_by, outcome_note=row.outcome_note,
            referral_id=row.referral_id,
        )
