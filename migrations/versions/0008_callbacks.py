"""callback, callback_call: callbacks after abandoned calls and follow-up calls

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

The vocabularies in the CHECK constraints are copied, not imported: a revision is history
and must not change when the model does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "callback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("caller_identity_id", sa.Integer(), nullable=False),
        sa.Column("caller_token", sa.String(length=16), nullable=False),
        sa.Column("open_for_identity", sa.Integer(), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("call_record_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("queue_priority", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome_by", sa.String(length=32), nullable=True),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=32), nullable=False),
        sa.Column("decided_by", sa.String(length=32), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('abandoned', 'followup')", name=op.f("ck_callback_kind")),
        sa.CheckConstraint(
            "status IN ('awaiting_decision', 'scheduled', 'done', 'failed', 'dismissed', "
            "'cancelled')",
            name=op.f("ck_callback_status"),
        ),
        sa.ForeignKeyConstraint(
            ["caller_identity_id"], ["caller_identity.id"],
            name=op.f("fk_callback_caller_identity_id_caller_identity"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["case_file.id"],
            name=op.f("fk_callback_case_id_case_file"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["call_record_id"], ["call_record.id"],
            name=op.f("fk_callback_call_record_id_call_record"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["scheduled_task.id"],
            name=op.f("fk_callback_task_id_scheduled_task"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback")),
        sa.UniqueConstraint("open_for_identity", name=op.f("uq_callback_open_for_identity")),
    )
    op.create_index(op.f("ix_callback_status"), "callback", ["status"])
    op.create_index(op.f("ix_callback_caller_identity_id"), "callback", ["caller_identity_id"])
    op.create_index(op.f("ix_callback_caller_token"), "callback", ["caller_token"])
    op.create_index(op.f("ix_callback_case_id"), "callback", ["case_id"])
    op.create_index(op.f("ix_callback_task_id"), "callback", ["task_id"])
    op.create_table(
        "callback_call",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("callback_id", sa.Integer(), nullable=False),
        sa.Column("call_record_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_id"], ["callback.id"],
            name=op.f("fk_callback_call_callback_id_callback"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["call_record_id"], ["call_record.id"],
            name=op.f("fk_callback_call_call_record_id_call_record"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_call")),
        sa.UniqueConstraint("call_record_id", name=op.f("uq_callback_call_call_record_id")),
    )
    op.create_index(op.f("ix_callback_call_callback_id"), "callback_call", ["callback_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_callback_call_callback_id"), table_name="callback_call")
    op.drop_table("callback_call")
    for column in ("task_id", "case_id", "caller_token", "caller_identity_id", "status"):
        op.drop_index(op.f(f"ix_callback_{column}"), table_name="callback")
    op.drop_table("callback")
