"""call_leg: who held each call when (issue 8, transfers)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

One row per holder of a call: the device bridged with the caller, from when until when,
and how her part ended. No column holds a number: an outside party appears as the trunk
device, never the number dialled. The vocabulary is copied, not imported: a revision is
history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENDINGS = "'answered', 'transferred-blind', 'transferred-warm', 'conference', 'hung-up'"


def upgrade() -> None:
    op.create_table(
        "call_leg",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("call_record_id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("interface", sa.String(length=128), nullable=False),
        sa.Column("from_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("until_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_how", sa.String(length=24), nullable=True),
        sa.CheckConstraint(
            f"ended_how IS NULL OR ended_how IN ({_ENDINGS})",
            name=op.f("ck_call_leg_ended_how"),
        ),
        sa.ForeignKeyConstraint(
            ["call_record_id"], ["call_record.id"],
            name=op.f("fk_call_leg_call_record_id_call_record"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_leg")),
        sa.UniqueConstraint("call_record_id", "seq", name=op.f("uq_call_leg_call_record_id")),
    )
    op.create_index(op.f("ix_call_leg_call_record_id"), "call_leg", ["call_record_id"])
    op.create_index(op.f("ix_call_leg_linkedid"), "call_leg", ["linkedid"])


def downgrade() -> None:
    op.drop_index(op.f("ix_call_leg_linkedid"), table_name="call_leg")
    op.drop_index(op.f("ix_call_leg_call_record_id"), table_name="call_leg")
    op.drop_table("call_leg")
