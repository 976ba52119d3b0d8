"""cases, consent, caller blocks and the hash-chained audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

The vocabularies in the CHECK constraints are copied, not imported: a revision is
history and must not change when callcenter.cases.models does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# prev_hash of the first audit row, and the anchor's hash while the log is empty.
GENESIS_HASH = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_anchor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_anchor")),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"])
    op.create_index(op.f("ix_audit_log_subject"), "audit_log", ["subject"])
    op.create_table(
        "case_counter",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_case_counter")),
    )
    op.create_table(
        "caller_block",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("blocked_by", sa.String(length=32), nullable=False),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["caller_identity.id"],
            name=op.f("fk_caller_block_identity_id_caller_identity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caller_block")),
    )
    op.create_index(op.f("ix_caller_block_identity_id"), "caller_block", ["identity_id"])
    op.create_table(
        "case_file",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("origin_call_id", sa.Integer(), nullable=True),
        sa.Column("caller_identity_id", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("sub_category", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("district", sa.String(length=64), nullable=True),
        sa.Column("risk", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assigned_to", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("in_progress_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("referred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "category IN ('phone-harassment', 'cyber-harassment', 'stalking', "
            "'immediate-danger', 'emotional-distress', 'domestic-violence', 'other', "
            "'prank-abusive')",
            name=op.f("ck_case_file_category"),
        ),
        sa.CheckConstraint(
            "risk IN ('low', 'medium', 'high', 'critical')", name=op.f("ck_case_file_risk")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'in-progress', 'referred', 'resolved', 'closed')",
            name=op.f("ck_case_file_status"),
        ),
        sa.ForeignKeyConstraint(
            ["caller_identity_id"],
            ["caller_identity.id"],
            name=op.f("fk_case_file_caller_identity_id_caller_identity"),
        ),
        sa.ForeignKeyConstraint(
            ["origin_call_id"],
            ["call_record.id"],
            name=op.f("fk_case_file_origin_call_id_call_record"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_file")),
        sa.UniqueConstraint("origin_call_id", name=op.f("uq_case_file_origin_call_id")),
        sa.UniqueConstraint("reference", name=op.f("uq_case_file_reference")),
        sa.UniqueConstraint("year", "seq", name=op.f("uq_case_file_year")),
    )
    op.create_index(op.f("ix_case_file_assigned_to"), "case_file", ["assigned_to"])
    op.create_index(op.f("ix_case_file_caller_identity_id"), "case_file", ["caller_identity_id"])
    op.create_index(op.f("ix_case_file_category"), "case_file", ["category"])
    op.create_index(op.f("ix_case_file_created_at"), "case_file", ["created_at"])
    op.create_index(op.f("ix_case_file_district"), "case_file", ["district"])
    op.create_index(op.f("ix_case_file_status"), "case_file", ["status"])
    op.create_table(
        "case_action",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('counselling', 'warning-call', 'family-counselling', 'fir-advised', "
            "'referred', 'forwarded-112', 'closed-as-prank')",
            name=op.f("ck_case_action_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["case_file.id"],
            name=op.f("fk_case_action_case_id_case_file"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_action")),
    )
    op.create_index(op.f("ix_case_action_case_id"), "case_action", ["case_id"])
    op.create_table(
        "case_call",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("call_record_id", sa.Integer(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_by", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_record_id"],
            ["call_record.id"],
            name=op.f("fk_case_call_call_record_id_call_record"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["case_file.id"],
            name=op.f("fk_case_call_case_id_case_file"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", "call_record_id", name=op.f("pk_case_call")),
    )
    op.create_index(op.f("ix_case_call_call_record_id"), "case_call", ["call_record_id"])
    op.create_table(
        "case_harasser",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("named_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("named_by", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["case_file.id"],
            name=op.f("fk_case_harasser_case_id_case_file"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["caller_identity.id"],
            name=op.f("fk_case_harasser_identity_id_caller_identity"),
        ),
        sa.PrimaryKeyConstraint("case_id", "identity_id", name=op.f("pk_case_harasser")),
    )
    op.create_index(op.f("ix_case_harasser_identity_id"), "case_harasser", ["identity_id"])
    op.create_table(
        "case_note",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["case_file.id"],
            name=op.f("fk_case_note_case_id_case_file"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_note")),
    )
    op.create_index(op.f("ix_case_note_case_id"), "case_note", ["case_id"])
    op.create_table(
        "case_status_change",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["case_file.id"],
            name=op.f("fk_case_status_change_case_id_case_file"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_status_change")),
    )
    op.create_index(op.f("ix_case_status_change_case_id"), "case_status_change", ["case_id"])
    op.create_table(
        "consent",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=32), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "scope IN ('police', 'department', 'family')", name=op.f("ck_consent_scope")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["case_file.id"],
            name=op.f("fk_consent_case_id_case_file"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["caller_identity.id"],
            name=op.f("fk_consent_identity_id_caller_identity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent")),
    )
    op.create_index(op.f("ix_consent_identity_id"), "consent", ["identity_id"])
    # The anchor's single row exists from the start, so every append can lock it with
    # an UPDATE (the statement both PostgreSQL and SQLite serialise on).
    anchor = sa.table(
        "audit_anchor",
        sa.column("id", sa.Integer()),
        sa.column("seq", sa.Integer()),
        sa.column("hash", sa.String()),
    )
    op.bulk_insert(anchor, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])


def downgrade() -> None:
    op.drop_index(op.f("ix_consent_identity_id"), table_name="consent")
    op.drop_table("consent")
    op.drop_index(op.f("ix_case_status_change_case_id"), table_name="case_status_change")
    op.drop_table("case_status_change")
    op.drop_index(op.f("ix_case_note_case_id"), table_name="case_note")
    op.drop_table("case_note")
    op.drop_index(op.f("ix_case_harasser_identity_id"), table_name="case_harasser")
    op.drop_table("case_harasser")
    op.drop_index(op.f("ix_case_call_call_record_id"), table_name="case_call")
    op.drop_table("case_call")
    op.drop_index(op.f("ix_case_action_case_id"), table_name="case_action")
    op.drop_table("case_action")
    op.drop_index(op.f("ix_case_file_status"), table_name="case_file")
    op.drop_index(op.f("ix_case_file_district"), table_name="case_file")
    op.drop_index(op.f("ix_case_file_created_at"), table_name="case_file")
    op.drop_index(op.f("ix_case_file_category"), table_name="case_file")
    op.drop_index(op.f("ix_case_file_caller_identity_id"), table_name="case_file")
    op.drop_index(op.f("ix_case_file_assigned_to"), table_name="case_file")
    op.drop_table("case_file")
    op.drop_index(op.f("ix_caller_block_identity_id"), table_name="caller_block")
    op.drop_table("caller_block")
    op.drop_table("case_counter")
    op.drop_index(op.f("ix_audit_log_subject"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_action"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("audit_anchor")
