"""scheduled_task: the follow-up scheduler's durable tasks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

The state vocabulary in the CHECK constraint is copied, not imported: a revision is
history and must not change when the model does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scheduled_task",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=128), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("call_record_id", sa.Integer(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("lease_holder", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'running', 'dialling', 'done', 'failed', 'cancelled')",
            name=op.f("ck_scheduled_task_state"),
        ),
        sa.CheckConstraint(
            "attempts >= 0 AND max_attempts >= 1", name=op.f("ck_scheduled_task_attempts")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["case_file.id"],
            name=op.f("fk_scheduled_task_case_id_case_file"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["call_record_id"], ["call_record.id"],
            name=op.f("fk_scheduled_task_call_record_id_call_record"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_task")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_scheduled_task_dedupe_key")),
    )
    op.create_index(op.f("ix_scheduled_task_kind"), "scheduled_task", ["kind"])
    op.create_index(op.f("ix_scheduled_task_case_id"), "scheduled_task", ["case_id"])
    op.create_index(
        op.f("ix_scheduled_task_call_record_id"), "scheduled_task", ["call_record_id"]
    )
    op.create_index(
        "ix_scheduled_task_state_due_at", "scheduled_task", ["state", "due_at"]
    )
    op.create_index(
        "ix_scheduled_task_state_lease_expires_at",
        "scheduled_task", ["state", "lease_expires_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_scheduled_task_state_lease_expires_at", table_name="scheduled_task")
    op.drop_index("ix_scheduled_task_state_due_at", table_name="scheduled_task")
    op.drop_index(op.f("ix_scheduled_task_call_record_id"), table_name="scheduled_task")
    op.drop_index(op.f("ix_scheduled_task_case_id"), table_name="scheduled_task")
    op.drop_index(op.f("ix_scheduled_task_kind"), table_name="scheduled_task")
    op.drop_table("scheduled_task")
