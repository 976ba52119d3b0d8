"""The durable task table of the follow-up scheduler.

One row per thing the helpline promised to do later: call a woman back, make a follow-up
call on her case, warn a harasser, chase a referral's deadline. The row is the only truth
about the task: which instance holds it (``lease_holder`` until ``lease_expires_at``), which
claim is the current one (``fence``, incremented at every claim), and whether a call may
already have been placed for it (``state = 'dialling'``).

The payload names rows (``{"callback_id": 12}``), never a person: no phone number, no name.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.store import Base


class TaskState(enum.StrEnum):
    PENDING = "pending"
    #: Claimed; the handler runs and has not yet started anything outside the database.
    RUNNING = "running"
    #: The handler said it is about to place a call (committed BEFORE the Originate): from
    #: here on the outcome may be unknown and the task is settled, never simply re-run.
    DIALLING = "dialling"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: States a task never leaves.
FINAL_STATES = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})

# Sizes shared with the migration and with the scheduler's truncation of texts.
KIND_MAX = 64
DEDUPE_KEY_MAX = 128
HOLDER_MAX = 64
OUTCOME_MAX = 64
ERROR_MAX = 255


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class ScheduledTask(Base):
    __tablename__ = "scheduled_task"
    __table_args__ = (
        # A repeat of the same intent (a second "call me back" press, a form submitted twice)
        # finds the first task instead of adding another call to her.
        UniqueConstraint("dedupe_key"),
        CheckConstraint(_in("state", TaskState), name="state"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
        # The claim query: due pending tasks, and live-state tasks whose lease ran out.
        Index("ix_scheduled_task_state_due_at", "state", "due_at"),
        Index("ix_scheduled_task_state_lease_expires_at", "state", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(KIND_MAX), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(DEDUPE_KEY_MAX), default=None)
    # The case (its timeline gets the outcome) and the call the task follows up, if any.
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("case_file.id", ondelete="SET NULL"), default=None, index=True
    )
    call_record_id: Mapped[int | None] = mapped_column(
        ForeignKey("call_record.id", ondelete="SET NULL"), default=None, index=True
    )
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), default=TaskState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_MAX), default=None)
    lease_holder: Mapped[str | None] = mapped_column(String(HOLDER_MAX), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    fence: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str | None] = mapped_column(String(OUTCOME_MAX), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


def aware(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands timezone-aware columns back naive)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
