"""Tables of the SMS part of follow-ups: one row per message, and its status history.

A message names its recipient only by ``caller_identity_id``: the identity row holds her
token and her sealed number, which the sender opens in memory at send time. No column here
holds a number, nor the text as sent (a hash of it is enough to recognise it in Twilio's
message list after a crash); the text is the template's, rendered from ``variables``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from callcenter.store import Base

# Sizes shared with migration 0009.
TEMPLATE_KEY_MAX = 48
DLT_ID_MAX = 32
TWILIO_SID_MAX = 34
STATUS_MAX = 24
ACTOR_MAX = 32


class SmsStatus(enum.StrEnum):
    """Where a message stands. Ours first, then Twilio's own message statuses."""

    #: Stored, waiting for its scheduler task.
    PENDING = "pending"
    #: Committed BEFORE the request to Twilio: from here on it may have been sent, so it
    #: is never sent again; an unknown outcome is settled, not retried.
    SUBMITTING = "submitting"
    # Twilio's statuses (https://www.twilio.com/docs/messaging/api/message-resource).
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"
    #: Twilio refused the request (4xx): nothing was sent.
    REJECTED = "rejected"
    #: Never handed to Twilio (consent withdrawn, no number, cancelled).
    NOT_SENT = "not_sent"
    #: Its worker died mid-request and Twilio's list did not show it: a person checks.
    UNCONFIRMED = "unconfirmed"


#: How far along a status is. A status only ever moves to a higher rank, so a late
#: ``sent`` callback cannot undo ``delivered``; equal ranks (two finals) keep the first.
STATUS_RANK: dict[SmsStatus, int] = {
    SmsStatus.PENDING: 0,
    SmsStatus.SUBMITTING: 1,
    SmsStatus.UNCONFIRMED: 2,
    SmsStatus.ACCEPTED: 3,
    SmsStatus.SCHEDULED: 3,
    SmsStatus.QUEUED: 4,
    SmsStatus.SENDING: 5,
    SmsStatus.SENT: 6,
    SmsStatus.DELIVERED: 7,
    SmsStatus.READ: 8,
    SmsStatus.UNDELIVERED: 7,
    SmsStatus.FAILED: 7,
    SmsStatus.CANCELED: 7,
    SmsStatus.REJECTED: 9,
    SmsStatus.NOT_SENT: 9,
}

#: Statuses after which nothing about the message changes any more.
FINAL_STATUSES = frozenset({
    SmsStatus.DELIVERED, SmsStatus.READ, SmsStatus.UNDELIVERED, SmsStatus.FAILED,
    SmsStatus.CANCELED, SmsStatus.REJECTED, SmsStatus.NOT_SENT,
})


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class SmsMessage(Base):
    __tablename__ = "sms_message"
    __table_args__ = (
        CheckConstraint(_in("status", SmsStatus), name="status"),
        UniqueConstraint("twilio_sid"),
        UniqueConstraint("task_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Her, by identity row only: token and sealed number live there, never here.
    caller_identity_id: Mapped[int] = mapped_column(
        ForeignKey("caller_identity.id"), index=True
    )
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("case_file.id", ondelete="SET NULL"), default=None, index=True
    )
    template_key: Mapped[str] = mapped_column(String(TEMPLATE_KEY_MAX))
    dlt_template_id: Mapped[str] = mapped_column(String(DLT_ID_MAX))
    variables: Mapped[dict[str, Any]] = mapped_column(JSON)
    body_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(STATUS_MAX), default=SmsStatus.PENDING.value)
    twilio_sid: Mapped[str | None] = mapped_column(String(TWILIO_SID_MAX), default=None)
    error_code: Mapped[int | None] = mapped_column(Integer, default=None)
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("scheduled_task.id", ondelete="SET NULL"), default=None
    )
    requested_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: When the request to Twilio was about to go out (the reconciliation's time window).
    submitting_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SmsStatusEvent(Base):
    """Each status a message was seen in, once, with where the news came from."""

    __tablename__ = "sms_status_event"
    __table_args__ = (
        # A repeated callback is the same news: it adds nothing.
        UniqueConstraint("message_id", "status"),
        CheckConstraint(_in("status", SmsStatus), name="status"),
        CheckConstraint("source IN ('local', 'api', 'callback', 'reconcile')", name="source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("sms_message.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(STATUS_MAX))
    error_code: Mapped[int | None] = mapped_column(Integer, default=None)
    source: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
