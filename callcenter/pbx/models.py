"""The call record: one row per call, keyed by (PBX node, Linkedid); and its legs: one row
per agent (or counsellor, or outside party) who held the call, in the order she was handed on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.store import Base

#: How a call ended, from the caller's side.
OUTCOMES = (
    "answered",          # an agent took the call (AgentConnect)
    "abandoned_queue",   # she hung up while waiting in a queue
    "abandoned_ivr",     # she hung up in the IVR
    "overflow",          # nobody in her queue took her; the overflow route did
    "fallback",          # the backend was down or cut off: the dialplan's fallback queue
    "ended",             # none of the above (e.g. she hung up before the IVR)
    "unobserved",        # it ended while no backend instance followed the PBX (a takeover)
)


class CallRecord(Base):
    """What the helpline knows of one call. The caller only as token and vault reference.

    Times are the PBX's clock (event ``Timestamp``), stored in UTC.
    """

    __tablename__ = "call_record"
    __table_args__ = (UniqueConstraint("node", "linkedid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(64))
    linkedid: Mapped[str] = mapped_column(String(64))
    caller_uniqueid: Mapped[str | None] = mapped_column(String(64), default=None)
    caller_identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("caller_identity.id"), default=None, index=True
    )
    caller_token: Mapped[str | None] = mapped_column(String(16), default=None, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    ivr_path: Mapped[str | None] = mapped_column(String(1024), default=None)
    route: Mapped[str | None] = mapped_column(String(64), default=None)
    category: Mapped[str | None] = mapped_column(String(64), default=None)
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    queue: Mapped[str | None] = mapped_column(String(64), default=None)
    priority: Mapped[int | None] = mapped_column(Integer, default=None)
    risk: Mapped[str | None] = mapped_column(String(16), default=None)
    flags: Mapped[str | None] = mapped_column(String(255), default=None)
    #: Opt-in from the IVR: may we call her back if the call drops? None = not asked.
    callback_ok: Mapped[bool | None] = mapped_column(Boolean, default=None)
    #: A complaint reference she keyed in the IVR (Luhn-checked; not personal data).
    reference_entered: Mapped[str | None] = mapped_column(String(16), default=None)
    agent_interface: Mapped[str | None] = mapped_column(String(128), default=None)
    outcome: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    hold_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    talk_seconds: Mapped[int | None] = mapped_column(Integer, default=None)


#: How one holder's part of the call ended.
LEG_ENDINGS = (
    "answered",            # she held the call until the caller's side ended it
    "transferred-blind",   # she sent the caller on (BlindTransfer)
    "transferred-warm",    # she consulted, then the caller was joined with the target
    "conference",          # she moved the call into a conference room (a new leg follows)
    "hung-up",             # her phone left while the caller stayed (e.g. left a conference)
)


class CallLeg(Base):
    """One holder of a call: who was bridged with the caller from when until when.

    ``interface`` is the device (``PJSIP/agent1``, or a trunk for an outside party), never
    a number; ``seq`` orders the hand-overs. Times are the PBX's clock, stored in UTC.
    """

    __tablename__ = "call_leg"
    __table_args__ = (
        UniqueConstraint("call_record_id", "seq"),
        CheckConstraint(
            "ended_how IS NULL OR ended_how IN ("
            + ", ".join(f"'{e}'" for e in LEG_ENDINGS) + ")",
            name="ended_how",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_record_id: Mapped[int] = mapped_column(
        ForeignKey("call_record.id", ondelete="CASCADE"), index=True
    )
    node: Mapped[str] = mapped_column(String(64))
    linkedid: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    interface: Mapped[str] = mapped_column(String(128))
    from_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    until_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    ended_how: Mapped[str | None] = mapped_column(String(24), default=None)
