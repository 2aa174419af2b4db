"""sender notices: held messages a halon6 node in "ndr" mode pushed, and their "ndr" jobs

On Halon 6.x a held copy may not survive Reject(); such a node accepts the message, holds
it and pushes the report link here, and the service mails the sender a non-delivery report.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('locate', 'notify', 'release', 'delete', 'enforce', 'discard', 'outcome_mail')"
NEW_KINDS = "kind IN ('locate', 'notify', 'release', 'delete', 'enforce', 'discard', 'outcome_mail', 'ndr')"
NOTICE_STATES = "state IN ('queued', 'sent', 'not_found', 'skipped', 'failed')"


def upgrade() -> None:
    op.create_table(
        "sender_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("link_issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("envelope_sender", sa.String(length=320), nullable=True),
        sa.Column("recipient_count", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(NOTICE_STATES, name=op.f("ck_sender_notices_state_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sender_notices")),
        sa.UniqueConstraint("node", "message_id", name=op.f("uq_sender_notices_node_message_id")),
    )
    op.create_index(op.f("ix_sender_notices_created_at"), "sender_notices", ["created_at"], unique=False)
    # Autogenerate does not compare CHECK constraints: the new job kind is added by hand.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_kind_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_jobs_kind_valid"), NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE kind = 'ndr'")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_kind_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_jobs_kind_valid"), OLD_KINDS)
    op.drop_index(op.f("ix_sender_notices_created_at"), table_name="sender_notices")
    op.drop_table("sender_notices")
