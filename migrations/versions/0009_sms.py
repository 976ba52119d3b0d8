"""sms_message and sms_status_event; consent may cover "sms"

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

A message refers to its recipient by caller_identity_id only: no column holds a number.
Consent gets the scope "sms" (she agreed to be texted), which none of police, department
and family covered. Vocabularies are copied, not imported: a revision is history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = (
    "'pending', 'submitting', 'accepted', 'scheduled', 'queued', 'sending', 'sent', "
    "'delivered', 'read', 'undelivered', 'failed', 'canceled', 'rejected', 'not_sent', "
    "'unconfirmed'"
)
_SCOPES_BEFORE = "scope IN ('police', 'department', 'family')"
_SCOPES_AFTER = "scope IN ('police', 'department', 'family', 'sms')"


def upgrade() -> None:
    op.create_table(
        "sms_message",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("caller_identity_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("template_key", sa.String(length=48), nullable=False),
        sa.Column("dlt_template_id", sa.String(length=32), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("twilio_sid", sa.String(length=34), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.String(length=32), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitting_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name=op.f("ck_sms_message_status")),
        sa.ForeignKeyConstraint(
            ["caller_identity_id"], ["caller_identity.id"],
            name=op.f("fk_sms_message_caller_identity_id_caller_identity"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["case_file.id"],
            name=op.f("fk_sms_message_case_id_case_file"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["scheduled_task.id"],
            name=op.f("fk_sms_message_task_id_scheduled_task"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_message")),
        sa.UniqueConstraint("twilio_sid", name=op.f("uq_sms_message_twilio_sid")),
        sa.UniqueConstraint("task_id", name=op.f("uq_sms_message_task_id")),
    )
    op.create_index(
        op.f("ix_sms_message_caller_identity_id"), "sms_message", ["caller_identity_id"]
    )
    op.create_index(op.f("ix_sms_message_case_id"), "sms_message", ["case_id"])
    op.create_table(
        "sms_status_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            f"status IN ({_STATUSES})", name=op.f("ck_sms_status_event_status")
        ),
        sa.CheckConstraint(
            "source IN ('local', 'api', 'callback', 'reconcile')",
            name=op.f("ck_sms_status_event_source"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["sms_message.id"],
            name=op.f("fk_sms_status_event_message_id_sms_message"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_status_event")),
        sa.UniqueConstraint(
            "message_id", "status", name=op.f("uq_sms_status_event_message_id")
        ),
    )
    op.create_index(
        op.f("ix_sms_status_event_message_id"), "sms_status_event", ["message_id"]
    )
    with op.batch_alter_table("consent") as batch:
        batch.drop_constraint(op.f("ck_consent_scope"), type_="check")
        batch.create_check_constraint(op.f("ck_consent_scope"), _SCOPES_AFTER)


def downgrade() -> None:
    # A consent to be texted has no place in the older vocabulary: it goes with the tables.
    op.execute("DELETE FROM consent WHERE scope = 'sms'")
    with op.batch_alter_table("consent") as batch:
        batch.drop_constraint(op.f("ck_consent_scope"), type_="check")
        batch.create_check_constraint(op.f("ck_consent_scope"), _SCOPES_BEFORE)
    op.drop_index(op.f("ix_sms_status_event_message_id"), table_name="sms_status_event")
    op.drop_table("sms_status_event")
    op.drop_index(op.f("ix_sms_message_case_id"), table_name="sms_message")
    op.drop_index(op.f("ix_sms_message_caller_identity_id"), table_name="sms_message")
    op.drop_table("sms_message")
