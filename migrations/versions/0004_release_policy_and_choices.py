"""release policy and recipient choices: approval states, allow-list, discard/outcome jobs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 01:05:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('locate', 'notify', 'release', 'delete', 'enforce')"
NEW_KINDS = "kind IN ('locate', 'notify', 'release', 'delete', 'enforce', 'discard', 'outcome_mail')"
OLD_STATES = "state IN ('notify_pending', 'notified', 'release_requested', 'released', 'expired', 'failed')"
NEW_STATES = (
    "state IN ('notify_pending', 'notified', 'release_requested', 'released', 'expired', 'failed', "
    "'approval_pending', 'release_denied', 'deleted')"
)


def upgrade() -> None:
    op.create_table(
        "allowed_senders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_recipient_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowed_senders")),
        sa.UniqueConstraint("recipient", "sender", name=op.f("uq_allowed_senders_recipient_sender")),
    )
    # Autogenerate does not compare CHECK constraints: the new states and kinds are added by hand.
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_in", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("decision_reason", sa.Text(), nullable=True))
        batch_op.drop_constraint(op.f("ck_recipients_state_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_recipients_state_valid"), NEW_STATES)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_kind_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_jobs_kind_valid"), NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE kind IN ('discard', 'outcome_mail')")
    # The old schema has no words for these: a held or denied copy is failed, a deleted one expired.
    op.execute("UPDATE recipients SET state = 'failed' WHERE state IN ('approval_pending', 'release_denied')")
    op.execute("UPDATE recipients SET state = 'expired' WHERE state = 'deleted'")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_kind_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_jobs_kind_valid"), OLD_KINDS)
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_recipients_state_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_recipients_state_valid"), OLD_STATES)
        batch_op.drop_column("decision_reason")
        batch_op.drop_column("held_in")

    op.drop_table("allowed_senders")
