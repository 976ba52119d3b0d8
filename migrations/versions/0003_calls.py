"""caller_identity and call_record: the vault's identities and one row per call

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "caller_identity",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_kid", sa.String(length=32), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("token_code", sa.String(length=16), nullable=False),
        sa.Column("sealed", sa.String(length=255), nullable=True),
        sa.Column("sealed_kid", sa.String(length=32), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("times_seen", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caller_identity")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_caller_identity_token_digest")),
    )
    op.create_index(
        op.f("ix_caller_identity_token_code"), "caller_identity", ["token_code"]
    )
    op.create_table(
        "call_record",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("caller_uniqueid", sa.String(length=64), nullable=True),
        sa.Column("caller_identity_id", sa.Integer(), nullable=True),
        sa.Column("caller_token", sa.String(length=16), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ivr_path", sa.String(length=1024), nullable=True),
        sa.Column("route", sa.String(length=64), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("risk", sa.String(length=16), nullable=True),
        sa.Column("flags", sa.String(length=255), nullable=True),
        sa.Column("callback_ok", sa.Boolean(), nullable=True),
        sa.Column("reference_entered", sa.String(length=16), nullable=True),
        sa.Column("agent_interface", sa.String(length=128), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("hold_seconds", sa.Integer(), nullable=True),
        sa.Column("talk_seconds", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["caller_identity_id"], ["caller_identity.id"],
            name=op.f("fk_call_record_caller_identity_id_caller_identity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_record")),
        sa.UniqueConstraint("node", "linkedid", name=op.f("uq_call_record_node")),
    )
    op.create_index(
        op.f("ix_call_record_caller_identity_id"), "call_record", ["caller_identity_id"]
    )
    op.create_index(op.f("ix_call_record_caller_token"), "call_record", ["caller_token"])
    op.create_index(op.f("ix_call_record_started_at"), "call_record", ["started_at"])
    op.create_index(op.f("ix_call_record_outcome"), "call_record", ["outcome"])


def downgrade() -> None:
    op.drop_index(op.f("ix_call_record_outcome"), table_name="call_record")
    op.drop_index(op.f("ix_call_record_started_at"), table_name="call_record")
    op.drop_index(op.f("ix_call_record_caller_token"), table_name="call_record")
    op.drop_index(op.f("ix_call_record_caller_identity_id"), table_name="call_record")
    op.drop_table("call_record")
    op.drop_index(op.f("ix_caller_identity_token_code"), table_name="caller_identity")
    op.drop_table("caller_identity")
