"""agent_account, agent_skill: who signs in to the console, with role and skills

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_account",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("endpoint", sa.String(length=80), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('agent', 'counsellor', 'supervisor', 'admin')",
            name=op.f("ck_agent_account_role"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_account")),
        sa.UniqueConstraint("username", name=op.f("uq_agent_account_username")),
    )
    op.create_index(op.f("ix_agent_account_endpoint"), "agent_account", ["endpoint"])
    op.create_table(
        "agent_skill",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("skill", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["agent_account.id"],
            name=op.f("fk_agent_skill_account_id_agent_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "skill", name=op.f("pk_agent_skill")),
    )
    op.create_index(op.f("ix_agent_skill_skill"), "agent_skill", ["skill"])


def downgrade() -> None:
    op.drop_index(op.f("ix_agent_skill_skill"), table_name="agent_skill")
    op.drop_table("agent_skill")
    op.drop_index(op.f("ix_agent_account_endpoint"), table_name="agent_account")
    op.drop_table("agent_account")
