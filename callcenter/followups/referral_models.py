"""Tables of referrals to field units and of graded action against harassers.

A referral names a unit of the directory (``config/referrals.toml``) by its code, never a
person's number: the unit's own contact details stay in the directory. A harasser appears
only as his vault identity (token + sealed number), as everywhere else.

The vocabularies are also CHECK constraints (migration 0007), so a hand-written SQL fix
meets the same rule as the service.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.store import Base


class ReferralStatus(enum.StrEnum):
    OPEN = "open"
    #: The unit said it has the referral (on the phone to staff, who recorded it).
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in-progress"
    CLOSED = "closed"
    #: Its deadline passed without a word from the unit; ``escalation_level`` says how often.
    ESCALATED = "escalated"


#: Statuses in which the deadline still runs: the unit has not answered.
WAITING_FOR_UNIT = frozenset({ReferralStatus.OPEN, ReferralStatus.ESCALATED})


class HarasserActionKind(enum.StrEnum):
    WARNING_CALL = "warning-call"  # level 1: a woman officer calls him
    FAMILY_COUNSELLING = "family-counselling"  # level 2: family, friends, relatives
    FIR_REFERRAL = "fir-referral"  # level 3: the police station registers an FIR


class HarasserActionStatus(enum.StrEnum):
    ASSIGNED = "assigned"
    DONE = "done"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"
    WRONG_NUMBER = "wrong-number"
    CANCELLED = "cancelled"


#: Sizes shared with the migration.
UNIT_CODE_MAX = 64
NAME_MAX = 64
USERNAME_MAX = 32


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class HarasserAction(Base):
    """One step of the graded response to one harasser named in one case."""

    __tablename__ = "harasser_action"
    __table_args__ = (
        CheckConstraint(_in("kind", HarasserActionKind), name="kind"),
        CheckConstraint(_in("status", HarasserActionStatus), name="status"),
        CheckConstraint("level BETWEEN 1 AND 3", name="level"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("case_file.id", ondelete="CASCADE"), index=True
    )
    identity_id: Mapped[int] = mapped_column(ForeignKey("caller_identity.id"), index=True)
    level: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: The officer who makes the call (or files the referral).
    owner: Mapped[str] = mapped_column(String(USERNAME_MAX), index=True)
    #: Why this level was chosen ("repeat: named in 3 complaints", "chosen by supervisor").
    basis: Mapped[str] = mapped_column(String(128))
    created_by: Mapped[str] = mapped_column(String(USERNAME_MAX))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    completed_by: Mapped[str | None] = mapped_column(String(USERNAME_MAX), default=None)
    outcome_note: Mapped[str | None] = mapped_column(Text, default=None)
    #: The FIR referral a level-3 action created.
    referral_id: Mapped[int | None] = mapped_column(
        ForeignKey("referral.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Referral(Base):
    """A case handed to a field unit, with a deadline the unit is chased against."""

    __tablename__ = "referral"
    __table_args__ = (
        CheckConstraint(_in("status", ReferralStatus), name="status"),
        CheckConstraint("escalation_level >= 0", name="escalation_level"),
        # The overdue list: referrals still waiting for their unit, by deadline.
        Index("ix_referral_status_deadline_at", "status", "deadline_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("case_file.id", ondelete="CASCADE"), index=True
    )
    unit_code: Mapped[str] = mapped_column(String(UNIT_CODE_MAX), index=True)
    department: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(USERNAME_MAX))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: created_at + the unit's SLA: when it counts as overdue.
    deadline_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The deadline it is chased against now (the SLA one, then each escalation's); None
    #: once the unit answered or the last escalation level is reached.
    next_deadline_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: Who at the unit acknowledged (their words, scrubbed), and who recorded it here.
    acknowledged_by: Mapped[str | None] = mapped_column(String(NAME_MAX), default=None)
    acknowledged_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    acknowledgement_recorded_by: Mapped[str | None] = mapped_column(
        String(USERNAME_MAX), default=None
    )
    closed_by: Mapped[str | None] = mapped_column(String(USERNAME_MAX), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    closing_note: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
