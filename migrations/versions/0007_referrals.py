"""referral and harasser_action: referrals to field units, graded action against harassers

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

The vocabularies in the CHECK constraints are copied, not imported: a revision is history
and must not change when the model does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "referral",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("unit_code", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledgement_recorded_by", sa.String(length=32), nullable=True),
        sa.Column("closed_by", sa.String(length=32), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closing_note", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'in-progress', 'closed', 'escalated')",
            name=op.f("ck_referral_status"),
        ),
        sa.CheckConstraint(
            "escalation_level >= 0", name=op.f("ck_referral_escalation_level")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["case_file.id"],
            name=op.f("fk_referral_case_id_case_file"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral")),
    )
    op.create_index(op.f("ix_referral_case_id"), "referral", ["case_id"])
    op.create_index(op.f("ix_referral_unit_code"), "referral", ["unit_code"])
    op.create_index("ix_referral_status_deadline_at", "referral", ["status", "deadline_at"])

    op.create_table(
        "harasser_action",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=False),
        sa.Column("basis", sa.String(length=128), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_by", sa.String(length=32), nullable=True),
        sa.Column("outcome_note", sa.Text(), nullable=True),
        sa.Column("referral_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('warning-call', 'family-counselling', 'fir-referral')",
            name=op.f("ck_harasser_action_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('assigned', 'done', 'unreachable', 'refused', 'wrong-number', "
            "'cancelled')",
            name=op.f("ck_harasser_action_status"),
        ),
        sa.CheckConstraint("level BETWEEN 1 AND 3", name=op.f("ck_harasser_action_level")),
        sa.ForeignKeyConstraint(
            ["case_id"], ["case_file.id"],
            name=op.f("fk_harasser_action_case_id_case_file"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["identity_id"], ["caller_identity.id"],
            name=op.f("fk_harasser_action_identity_id_caller_identity"),
        ),
        sa.ForeignKeyConstraint(
            ["referral_id"], ["referral.id"],
            name=op.f("fk_harasser_action_referral_id_referral"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_harasser_action")),
    )
    op.create_index(op.f("ix_harasser_action_case_id"), "harasser_action", ["case_id"])
    op.create_index(
        op.f("ix_harasser_action_identity_id"), "harasser_action", ["identity_id"]
    )
    op.create_index(op.f("ix_harasser_action_status"), "harasser_action", ["status"])
    op.create_index(op.f("ix_harasser_action_owner"), "harasser_action", ["owner"])


def downgrade() -> None:
    op.drop_index(op.f("ix_harasser_action_owner"), table_name="harasser_action")
    op.drop_index(op.f("ix_harasser_action_status"), table_name="harasser_action")
    op.drop_index(op.f("ix_harasser_action_identity_id"), table_name="harasser_action")
    op.drop_index(op.f("ix_harasser_action_case_id"), table_name="harasser_action")
    op.drop_table("harasser_action")
    op.drop_index("ix_referral_status_deadline_at", table_name="referral")
    op.drop_index(op.f("ix_referral_unit_code"), table_name="referral")
    op.drop_index(op.f("ix_referral_case_id"), table_name="referral")
    op.drop_table("referral")
