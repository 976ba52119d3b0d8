"""Tables of callbacks and follow-up calls.

A ``callback`` row is the helpline's promise to call a woman: after she abandoned a call
(``abandoned``) or on a date an agent set for her case (``followup``). It names her only
through ``caller_identity_id`` (the vault's sealed number) and her token; the number is
opened from the vault at dial time and never stored here.

``callback_call`` links every abandoned call merged into one callback: a repeat abandon
within the window updates the existing callback instead of adding a second call to her,
and a replayed call-ended event finds its call already linked.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.store import Base


class CallbackKind(enum.StrEnum):
    ABANDONED = "abandoned"
    FOLLOWUP = "followup"


class CallbackStatus(enum.StrEnum):
    #: She did not say a callback is safe: a supervisor decides (approve or dismiss).
    AWAITING_DECISION = "awaiting_decision"
    SCHEDULED = "scheduled"
    #: Finished: reached, or given up after the last attempt (``outcome`` says which).
    DONE = "done"
    FAILED = "failed"
    DISMISSED = "dismissed"
    CANCELLED = "cancelled"


#: States in which a callback may still lead to a call.
OPEN_STATUSES = frozenset({CallbackStatus.AWAITING_DECISION, CallbackStatus.SCHEDULED})


class CallbackOutcome(enum.StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    UNREACHABLE = "unreachable"
    AGENT_TIMEOUT = "agent_timeout"
    AGENT_LEFT = "agent_left"
    NOT_DIALLED = "not_dialled"
    #: Recorded by the agent: someone else answered her phone.
    WRONG_PERSON = "wrong_person"
    #: Recorded by the agent: she answered but could not talk safely.
    UNSAFE_TO_TALK = "unsafe_to_talk"
    #: The worker died after dialling and the PBX showed the call had been placed.
    PLACED = "placed"
    #: The worker died after dialling and nothing showed whether the call was placed.
    UNCONFIRMED = "unconfirmed"
    GAVE_UP = "gave_up"
    NOT_ALLOWED = "not_allowed"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Callback(Base):
    __tablename__ = "callback"
    __table_args__ = (
        CheckConstraint(_in("kind", CallbackKind), name="kind"),
        CheckConstraint(_in("status", CallbackStatus), name="status"),
        # One open abandoned-call callback per woman: set while open, NULL after, so two
        # abandons processed at once cannot both create one.
        UniqueConstraint("open_for_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24), index=True)
    caller_identity_id: Mapped[int] = mapped_column(
        ForeignKey("caller_identity.id"), index=True
    )
    caller_token: Mapped[str] = mapped_column(String(16), index=True)
    open_for_identity: Mapped[int | None] = mapped_column(Integer, default=None)
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("case_file.id", ondelete="SET NULL"), default=None, index=True
    )
    #: The call that led to it (the latest one when abandons were merged).
    call_record_id: Mapped[int | None] = mapped_column(
        ForeignKey("call_record.id", ondelete="SET NULL"), default=None
    )
    #: Why she is called, shown to the agent: abandoned_queue, abandoned_ivr, followup.
    reason: Mapped[str] = mapped_column(String(32))
    category: Mapped[str | None] = mapped_column(String(64), default=None)
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    queue_priority: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("scheduled_task.id", ondelete="SET NULL"), default=None, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str | None] = mapped_column(String(32), default=None)
    outcome_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: Who recorded the outcome: "pbx" for the dial result, or the agent's username.
    outcome_by: Mapped[str | None] = mapped_column(String(32), default=None)
    #: How many abandoned calls were merged into this callback.
    repeats: Mapped[int] = mapped_column(Integer, default=1)
    requested_by: Mapped[str] = mapped_column(String(32))
    decided_by: Mapped[str | None] = mapped_column(String(32), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CallbackCall(Base):
    """An abandoned call merged into a callback (each call at most once)."""

    __tablename__ = "callback_call"
    __table_args__ = (UniqueConstraint("call_record_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    callback_id: Mapped[int] = mapped_column(
        ForeignKey("callback.id", ondelete="CASCADE"), index=True
    )
    call_record_id: Mapped[int] = mapped_column(
        ForeignKey("call_record.id", ondelete="CASCADE")
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
