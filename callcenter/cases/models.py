"""Tables of the cases domain. Numbers exist here only sealed (AES-GCM, see vault)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.store import Base


class CallerIdentity(Base):
    """One number the helpline knows, as a token and a sealed number.

    ``token_digest`` (HMAC under ``token_kid``) links her calls and cases; the
    number itself is only in ``sealed``, which opens only through the vault.
    A withheld caller has a random digest and no sealed number.
    """

    __tablename__ = "caller_identity"
    __table_args__ = (UniqueConstraint("token_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    purpose: Mapped[str] = mapped_column(String(16))  # caller | harasser
    token_kid: Mapped[str] = mapped_column(String(32))
    token_digest: Mapped[str] = mapped_column(String(64))
    token_code: Mapped[str] = mapped_column(String(16), index=True)
    sealed: Mapped[str | None] = mapped_column(String(255), default=None)
    sealed_kid: Mapped[str | None] = mapped_column(String(32), default=None)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    times_seen: Mapped[int] = mapped_column(Integer, default=1)


# --------------------------------------------------------------------------- cases
#
# The vocabularies below are also CHECK constraints in migration 0004: the web layer, the
# CLI and a hand-written SQL fix all meet the same rule. Categories use the IVR's words
# (config/ivr.toml routes) so a call's IVR category becomes the case's without mapping.


class CaseCategory(StrEnum):
    PHONE = "phone-harassment"
    INTERNET = "cyber-harassment"  # internet and social media
    STALKING = "stalking"
    IMMEDIATE_DANGER = "immediate-danger"
    DISTRESS = "emotional-distress"
    DOMESTIC = "domestic-violence"
    OTHER = "other"
    PRANK = "prank-abusive"


class CaseStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in-progress"
    REFERRED = "referred"
    RESOLVED = "resolved"
    CLOSED = "closed"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


#: The wrap-up form's choices -> (case category, sub-category): the one list both the
#: console and the case file speak. Finer than the categories because a counsellor files
#: what the conversation revealed (dowry, a silent call) in seconds, and the case keeps it
#: as a sub-category of the complaint types the helpline reports on.
WRAPUP_CHOICES: dict[str, tuple[CaseCategory, str | None]] = {
    "harassment_phone": (CaseCategory.PHONE, None),
    "harassment_online": (CaseCategory.INTERNET, None),
    "stalking": (CaseCategory.STALKING, None),
    "domestic_violence": (CaseCategory.DOMESTIC, None),
    "sexual_violence": (CaseCategory.OTHER, "sexual-violence"),
    "dowry": (CaseCategory.DOMESTIC, "dowry"),
    "immediate_danger": (CaseCategory.IMMEDIATE_DANGER, None),
    "distress": (CaseCategory.DISTRESS, None),
    "information": (CaseCategory.OTHER, "information"),
    "silent": (CaseCategory.OTHER, "silent-call"),
    "prank": (CaseCategory.PRANK, None),
    "other": (CaseCategory.OTHER, None),
}

#: The wrap-up choice the console offers first for a call the IVR (or a colleague's
#: hand-over) already put in a category: the plain choice for that category, never a
#: sub-category the conversation has not revealed.
WRAPUP_SUGGESTIONS: dict[CaseCategory, str] = {
    category: choice for choice, (category, sub) in WRAPUP_CHOICES.items() if sub is None
}


class CaseActionKind(StrEnum):
    """What the helpline did for her; each one is a line in the case's timeline."""

    COUNSELLING = "counselling"
    WARNING_CALL = "warning-call"  # a call to the harasser, by a woman police officer
    FAMILY_COUNSELLING = "family-counselling"  # family, friends or relatives
    FIR_ADVISED = "fir-advised"
    REFERRED = "referred"
    FORWARDED_112 = "forwarded-112"
    CLOSED_AS_PRANK = "closed-as-prank"


class ConsentScope(StrEnum):
    """With whom she agreed her number may be shared."""

    POLICE = "police"
    DEPARTMENT = "department"  # a named department (consent.department)
    FAMILY = "family"
    #: She may be texted (neutral templates only). Never a ground to reveal her number.
    SMS = "sms"


def _in(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class CaseCounter(Base):
    """The last complaint sequence handed out in a year (one row per year).

    Incremented with an upsert inside the transaction that creates the case, so
    concurrent wrap-ups on several instances get distinct, gap-free numbers: the row
    lock (PostgreSQL) or the single writer (SQLite) serialises them.
    """

    __tablename__ = "case_counter"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer)


class Case(Base):
    """One complaint. The caller appears only as an identity id (token + sealed number)."""

    __tablename__ = "case_file"
    __table_args__ = (
        UniqueConstraint("reference"),
        UniqueConstraint("year", "seq"),
        # One case per wrap-up: a resubmitted form finds the case its first submit made.
        UniqueConstraint("origin_call_id"),
        CheckConstraint(_in("status", CaseStatus), name="status"),
        CheckConstraint(_in("category", CaseCategory), name="category"),
        CheckConstraint(_in("risk", RiskLevel), name="risk"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(16))
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    origin_call_id: Mapped[int | None] = mapped_column(
        ForeignKey("call_record.id"), default=None
    )
    caller_identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("caller_identity.id"), default=None, index=True
    )
    category: Mapped[str] = mapped_column(String(32), index=True)
    sub_category: Mapped[str | None] = mapped_column(String(64), default=None)
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    district: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    risk: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    assigned_to: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When the case last entered each status; the full history is case_status_change.
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    in_progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    referred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class CaseCall(Base):
    """A call that belongs to a case (the one it was opened from, and any later ones)."""

    __tablename__ = "case_call"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("case_file.id", ondelete="CASCADE"), primary_key=True
    )
    call_record_id: Mapped[int] = mapped_column(
        ForeignKey("call_record.id"), primary_key=True, index=True
    )
    linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    linked_by: Mapped[str] = mapped_column(String(32))


class CaseHarasser(Base):
    """A harasser named in a case: an identity of purpose ``harasser``."""

    __tablename__ = "case_harasser"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("case_file.id", ondelete="CASCADE"), primary_key=True
    )
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("caller_identity.id"), primary_key=True, index=True
    )
    named_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    named_by: Mapped[str] = mapped_column(String(32))


class CaseNote(Base):
    __tablename__ = "case_note"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("case_file.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    author: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)


class CaseAction(Base):
    __tablename__ = "case_action"
    __table_args__ = (CheckConstraint(_in("kind", CaseActionKind), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("case_file.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text, default=None)


class CaseStatusChange(Base):
    __tablename__ = "case_status_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("case_file.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(16), default=None)
    to_status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text, default=None)


class CallerBlock(Base):
    """A caller marked abusive, turned away by the IVR until ``expires_at``."""

    __tablename__ = "caller_block"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("caller_identity.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    blocked_by: Mapped[str] = mapped_column(String(32))
    blocked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    lifted_by: Mapped[str | None] = mapped_column(String(32), default=None)


class Consent(Base):
    """Her consent to share her number with someone; withdrawn by setting ``withdrawn_at``."""

    __tablename__ = "consent"
    __table_args__ = (CheckConstraint(_in("scope", ConsentScope), name="scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("caller_identity.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("case_file.id", ondelete="SET NULL"), default=None
    )
    scope: Mapped[str] = mapped_column(String(16))
    department: Mapped[str | None] = mapped_column(String(64), default=None)
    given_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_by: Mapped[str] = mapped_column(String(32))
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    withdrawn_by: Mapped[str | None] = mapped_column(String(32), default=None)


# --------------------------------------------------------------------------- audit


class AuditEntry(Base):
    """One line of the append-only, hash-chained audit log (see ``cases.audit``)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(128), index=True)
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditAnchor(Base):
    """The chain's head, kept apart from the chain so deleting its last rows shows.

    Exactly one row (id 1), created by the migration. ``mac`` is an HMAC of the head
    under a key the database does not hold, when one is configured.
    """

    __tablename__ = "audit_anchor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
