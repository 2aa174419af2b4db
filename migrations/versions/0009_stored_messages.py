"""stored messages: rejected mail an rspamd node pushed, kept by the service (compressed),
one copy row per recipient; and the "learn_ham" job kind

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 04:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KINDS = "'locate', 'notify', 'release', 'delete', 'enforce', 'discard', 'outcome_mail', 'ndr'"
OLD_KINDS = f"kind IN ({KINDS})"
NEW_KINDS = f"kind IN ({KINDS}, 'learn_ham')"


def upgrade() -> None:
    op.create_table(
        "stored_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("envelope_sender", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("queue_id", sa.String(length=64), nullable=False),
        sa.Column("sender_ip", sa.String(length=45), nullable=False),
        sa.Column("spam_score", sa.Float(), nullable=True),
        sa.Column("symbols", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("stored_size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_messages")),
        sa.UniqueConstraint("node", "message_id", name=op.f("uq_stored_messages_node_message_id")),
    )
    op.create_index(op.f("ix_stored_messages_received_at"), "stored_messages", ["received_at"], unique=False)
    op.create_table(
        "stored_copies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("envelope_sender", sa.String(length=320), nullable=False),
        sa.Column("quarantine", sa.String(length=8), nullable=True),
        sa.Column("held_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("release_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("relay_reply", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "quarantine IS NULL OR quarantine IN ('short', 'long')", name=op.f("ck_stored_copies_quarantine_valid")
        ),
        sa.ForeignKeyConstraint(
            ["message_pk"],
            ["stored_messages.id"],
            name=op.f("fk_stored_copies_message_pk_stored_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_copies")),
        sa.UniqueConstraint("message_pk", "recipient", name=op.f("uq_stored_copies_message_pk_recipient")),
    )
    op.create_index(op.f("ix_stored_copies_message_pk"), "stored_copies", ["message_pk"], unique=False)
    op.create_index(
        op.f("ix_stored_copies_quarantine_held_since"), "stored_copies", ["quarantine", "held_since"], unique=False
    )
    # Autogenerate does not compare CHECK constraints: the new job kind is added by hand.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_kind_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_jobs_kind_valid"), NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE kind = 'learn_ham'")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_kind_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_jobs_kind_valid"), OLD_KINDS)
    op.drop_index(op.f("ix_stored_copies_quarantine_held_since"), table_name="stored_copies")
    op.drop_index(op.f("ix_stored_copies_message_pk"), table_name="stored_copies")
    op.drop_table("stored_copies")
    op.drop_index(op.f("ix_stored_messages_received_at"), table_name="stored_messages")
    op.drop_table("stored_messages")
