"""call recordings, and the record of erased cases

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

``recording`` names its call by (node, linkedid), the key of ``call_record``, without a
foreign key: a recording the PBX made while no backend followed it arrives before (or
without) its call record. ``case_erasure`` marks cases whose personal data was erased.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recording",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("kid", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording")),
        sa.UniqueConstraint(
            "node", "linkedid", "content_sha256", name=op.f("uq_recording_node")
        ),
    )
    op.create_index(op.f("ix_recording_linkedid"), "recording", ["linkedid"])
    op.create_index(op.f("ix_recording_received_at"), "recording", ["received_at"])
    op.create_table(
        "case_erasure",
        sa.Column("case_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_by", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["case_file.id"],
            name=op.f("fk_case_erasure_case_id_case_file"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_case_erasure")),
    )


def downgrade() -> None:
    op.drop_table("case_erasure")
    op.drop_index(op.f("ix_recording_received_at"), table_name="recording")
    op.drop_index(op.f("ix_recording_linkedid"), table_name="recording")
    op.drop_table("recording")
