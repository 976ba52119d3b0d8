"""Her consent, and the only way a number leaves the vault for a person to see.

1090 promises every woman her identity stays hidden until she says otherwise. So a
number is revealed only

- to a supervisor (the role is checked here; the web layer passes the signed-in role),
- and either for a purpose her recorded, not withdrawn consent covers (police, a named
  department, family), or under an emergency override with a written reason,

and every attempt, granted or refused, is a row in the audit log, written in the same
transaction as the decision. A harasser's number is revealed under the consent of a
woman whose complaint names him: sharing it shares her complaint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.agents.models import Role
from callcenter.store import Store

from .audit import AuditAction, AuditLog, scrub_text
from .errors import CaseError, VaultError
from .models import CallerIdentity, Case, CaseHarasser, Consent, ConsentScope
from .vault import Purpose, SecretNumber, Vault

__all__ = [
    "MIN_OVERRIDE_REASON",
    "ConsentInvalid",
    "ConsentRecord",
    "ConsentService",
    "NothingToReveal",
    "OverrideReasonTooShort",
    "RevealNotAllowed",
    "RevealRefused",
    "RevealWithoutConsent",
]

#: Characters an emergency override's reason needs: a sentence, not "urgent".
MIN_OVERRIDE_REASON: Final = 20
MAX_OVERRIDE_REASON: Final = 1000
_DEPARTMENT_MAX = 64
_ACTOR_MAX = 32


class ConsentInvalid(CaseError, ValueError):
    code: ClassVar[str] = "consent_invalid"


class RevealRefused(CaseError, PermissionError):
    """A reveal was refused; the refusal is in the audit log (``audit_seq``)."""

    code: ClassVar[str] = "reveal_refused"

    def __init__(self, message: str, *, identity_id: int, audit_seq: int | None = None) -> None:
        super().__init__(message)
        self.identity_id = identity_id
        self.audit_seq = audit_seq


class RevealNotAllowed(RevealRefused):
    code: ClassVar[str] = "reveal_not_supervisor"


class RevealWithoutConsent(RevealRefused):
    code: ClassVar[str] = "reveal_no_consent"


class OverrideReasonTooShort(RevealRefused):
    code: ClassVar[str] = "reveal_override_reason_too_short"


class NothingToReveal(RevealRefused):
    """No such identity, or she withheld her number: there is no number to show."""

    code: ClassVar[str] = "reveal_nothing_to_reveal"


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    id: int
    identity_id: int
    case_id: int | None
    scope: ConsentScope
    department: str | None
    given_at: datetime
    recorded_by: str
    withdrawn_at: datetime | None
    withdrawn_by: str | None

    def covers(self, scope: ConsentScope, department: str | None, at: datetime) -> bool:
        if self.scope is not scope or self.given_at > at:
            return False
        if self.withdrawn_at is not None and self.withdrawn_at <= at:
            return False
        if scope is ConsentScope.DEPARTMENT:
            return (
                department is not None
                and self.department is not None
                and _department_key(department) == _department_key(self.department)
            )
        return True

    @classmethod
    def from_row(cls, row: Consent) -> ConsentRecord:
        return cls(
            row.id, row.identity_id, row.case_id, ConsentScope(row.scope), row.department,
            _aware(row.given_at), row.recorded_by,
            _aware(row.withdrawn_at) if row.withdrawn_at is not None else None,
            row.withdrawn_by,
        )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _department_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _department(scope: ConsentScope, department: str | None) -> str | None:
    if scope is not ConsentScope.DEPARTMENT:
        if department:
            raise ConsentInvalid("a department is named only for the 'department' scope")
        return None
    name = " ".join((department or "").split())
    if not name or len(name) > _DEPARTMENT_MAX:
        raise ConsentInvalid(f"name the department (1-{_DEPARTMENT_MAX} characters)")
    if scrub_text(name) != name:
        raise ConsentInvalid("a department name cannot contain a phone number")
    return name


def _scope(value: ConsentScope | str) -> ConsentScope:
    try:
        return ConsentScope(value)
    except ValueError:
        choices = ", ".join(s.value for s in ConsentScope)
        raise ConsentInvalid(f"consent scope must be one of {choices}") from None


def _actor(value: str) -> str:
    actor = value.strip()
    if not actor or len(actor) > _ACTOR_MAX:
        raise ConsentInvalid(f"who did it must be a username (1-{_ACTOR_MAX} characters)")
    return actor


@dataclass(frozen=True, slots=True)
class _Decision:
    granted: bool
    refusal: type[RevealRefused] | None = None
    message: str = ""
    basis: str | None = None  # "consent" | "override"
    consent_id: int | None = None


class ConsentService:
    """Records consent, reveals numbers under it, and audits recording playback."""

    def __init__(
        self,
        store: Store,
        vault: Vault,
        audit: AuditLog,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._vault = vault
        self._audit = audit
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- consent

    async def record_consent(
        self,
        identity_id: int,
        scope: ConsentScope | str,
        *,
        recorded_by: str,
        department: str | None = None,
        case_id: int | None = None,
        given_at: datetime | None = None,
    ) -> ConsentRecord:
        """What she agreed to, as the agent heard it on the call."""
        chosen = _scope(scope)
        name = _department(chosen, department)
        actor = _actor(recorded_by)
        now = _aware(self._clock()).astimezone(UTC)
        async with self._store.transaction() as session:
            identity = await session.get(CallerIdentity, identity_id)
            if identity is None or identity.purpose != Purpose.CALLER.value:
                raise ConsentInvalid("consent is recorded for a caller's identity")
            row = Consent(
                identity_id=identity_id, case_id=case_id, scope=chosen.value,
                department=name, recorded_by=actor,
                given_at=_aware(given_at).astimezone(UTC) if given_at else now,
            )
            session.add(row)
            await session.flush()
            await self._audit.append(
                session, actor=actor, action=AuditAction.CONSENT_RECORDED,
                subject=f"identity:{identity_id}",
                details={"consent_id": row.id, "scope": chosen.value, "department": name,
                         "case_id": case_id},
                at=now,
            )
            return ConsentRecord.from_row(row)

    async def withdraw_consent(
        self, consent_id: int, *, withdrawn_by: str, at: datetime | None = None
    ) -> ConsentRecord:
        """She changed her mind; from ``at`` on, the consent covers nothing."""
        actor = _actor(withdrawn_by)
        now = _aware(at or self._clock()).astimezone(UTC)
        async with self._store.transaction() as session:
            row = await session.get(Consent, consent_id)
            if row is None:
                raise ConsentInvalid("no such consent")
            if row.withdrawn_at is None:
                row.withdrawn_at, row.withdrawn_by = now, actor
                await session.flush()
                await self._audit.append(
                    session, actor=actor, action=AuditAction.CONSENT_WITHDRAWN,
                    subject=f"identity:{row.identity_id}", details={"consent_id": row.id},
                    at=now,
                )
            return ConsentRecord.from_row(row)

    async def consents_for(self, identity_id: int) -> list[ConsentRecord]:
        async with self._store.session() as session:
            rows = await session.scalars(
                select(Consent).where(Consent.identity_id == identity_id).order_by(Consent.id)
            )
            return [ConsentRecord.from_row(row) for row in rows]

    # -- reveal

    async def reveal(
        self,
        identity_id: int,
        actor: str,
        role: Role | str,
        purpose: ConsentScope | str,
        override_reason: str | None = None,
        *,
        department: str | None = None,
    ) -> SecretNumber:
        """The number of ``identity_id`` for ``purpose``, or :class:`RevealRefused`.

        Audited either way, in the transaction that decides, before anything returns.
        """
        actor = _actor(actor)
        now = _aware(self._clock()).astimezone(UTC)
        chosen = _scope(purpose)
        number: SecretNumber | None = None
        vault_error: VaultError | None = None
        async with self._store.transaction() as session:
            identity = await session.get(CallerIdentity, identity_id)
            try:
                name = _department(chosen, department)
            except ConsentInvalid as exc:
                decision = _Decision(False, RevealWithoutConsent, str(exc))
                name = None
            else:
                decision = await self._decide(
                    session, identity, role, chosen, name, override_reason, now
                )
            if decision.granted:
                assert identity is not None and identity.sealed is not None
                try:
                    number = self._vault.open(identity.sealed, Purpose(identity.purpose))
                except VaultError as exc:
                    vault_error = exc
            details: dict[str, Any] = {
                "granted": number is not None,
                "role": str(role),
                "purpose": chosen.value,
                "department": name,
                "basis": decision.basis,
                "consent_id": decision.consent_id,
            }
            if decision.refusal is not None:
                details["refused"] = decision.refusal.code
            if vault_error is not None:
                details["refused"] = vault_error.code
            if override_reason is not None:
                details["override_reason"] = override_reason.strip()[:MAX_OVERRIDE_REASON]
            entry = await self._audit.append(
                session, actor=actor, action=AuditAction.REVEAL,
                subject=f"identity:{identity_id}", details=details, at=now,
            )
        # Raised after the commit: a refusal must stay in the log.
        if vault_error is not None:
            raise vault_error
        if number is None:
            refusal = decision.refusal or RevealRefused
            raise refusal(decision.message, identity_id=identity_id, audit_seq=entry.seq)
        return number

    async def _decide(
        self,
        session: AsyncSession,
        identity: CallerIdentity | None,
        role: Role | str,
        scope: ConsentScope,
        department: str | None,
        override_reason: str | None,
        now: datetime,
    ) -> _Decision:
        if str(role).strip().lower() != Role.SUPERVISOR.value:
            return _Decision(
                False, RevealNotAllowed, "only a supervisor can reveal a caller's number"
            )
        if scope is ConsentScope.SMS:
            # Agreeing to a text message is not agreeing to anyone seeing her number.
            return _Decision(
                False, RevealNotAllowed, "consent to SMS does not allow revealing her number"
            )
        if identity is None or identity.sealed is None:
            return _Decision(False, NothingToReveal, "there is no number to reveal")
        if override_reason is not None:
            if len(" ".join(override_reason.split())) < MIN_OVERRIDE_REASON:
                return _Decision(
                    False, OverrideReasonTooShort,
                    f"an emergency override needs a written reason of at least "
                    f"{MIN_OVERRIDE_REASON} characters",
                )
            return _Decision(True, basis="override")
        for consent in await self._consents_covering(session, identity):
            if consent.covers(scope, department, now):
                return _Decision(True, basis="consent", consent_id=consent.id)
        return _Decision(
            False, RevealWithoutConsent,
            "she has not consented to sharing her number for this purpose; "
            "ask her, or use an emergency override with a reason",
        )

    async def _consents_covering(
        self, session: AsyncSession, identity: CallerIdentity
    ) -> list[ConsentRecord]:
        if identity.purpose == Purpose.CALLER.value:
            rows = await session.scalars(
                select(Consent).where(Consent.identity_id == identity.id)
            )
            return [ConsentRecord.from_row(row) for row in rows]
        # A harasser: the consents of the women whose complaints name him, each one
        # either general or given for the very case that names him.
        named = (
            select(Case.id, Case.caller_identity_id)
            .join(CaseHarasser, CaseHarasser.case_id == Case.id)
            .where(CaseHarasser.identity_id == identity.id)
        )
        cases = (await session.execute(named)).all()
        callers = {caller for _case, caller in cases if caller is not None}
        case_ids = {case for case, _caller in cases}
        if not callers:
            return []
        rows = await session.scalars(select(Consent).where(Consent.identity_id.in_(callers)))
        return [
            ConsentRecord.from_row(row)
            for row in rows
            if row.case_id is None or row.case_id in case_ids
        ]

    # -- recordings

    async def record_playback(
        self, call_record_id: int, *, actor: str, role: Role | str
    ) -> None:
        """Audit that ``actor`` is about to listen to the recording of a call."""
        await self._audit.record(
            actor=_actor(actor), action=AuditAction.PLAYBACK,
            subject=f"call:{call_record_id}", details={"role": str(role)},
        )
