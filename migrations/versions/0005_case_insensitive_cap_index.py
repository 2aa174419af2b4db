"""case-insensitive index for the notification cap

The cap query filters on lower(address); the plain (address, notified_at) index could not
serve it, so every notification scanned the recipients table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.drop_index("ix_recipients_address_notified_at")
    op.create_index("ix_recipients_lower_address_notified_at", "recipients", [sa.text("lower(address)"), "notified_at"])


def downgrade() -> None:
    op.drop_index("ix_recipients_lower_address_notified_at", table_name="recipients")
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.create_index("ix_recipients_address_notified_at", ["address", "notified_at"], unique=False)
