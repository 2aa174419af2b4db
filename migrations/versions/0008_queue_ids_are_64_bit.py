"""recipients.queue holds 64-bit ids: Halon's queue ids are int64 (6.x sends them as strings)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 23:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite's INTEGER is 64-bit already (and a batch rebuild would drop the expression index).
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "recipients", "queue", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "recipients", "queue", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
        )
