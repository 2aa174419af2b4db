"""preview contents: the start of a Halon-held message's bytes, read once for the
recipient's preview

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "preview_contents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_preview_contents")),
        sa.UniqueConstraint("node", "message_id", name=op.f("uq_preview_contents_node_message_id")),
    )
    op.create_index(op.f("ix_preview_contents_fetched_at"), "preview_contents", ["fetched_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_preview_contents_fetched_at"), table_name="preview_contents")
    op.drop_table("preview_contents")
