"""used CAPTCHA solutions and sign-in failures, shared by every web process

A solution was remembered in each process's memory, so with several gunicorn workers it
could be used once per worker; sign-in attempts were limited per client IP only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_captcha_solutions",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_used_captcha_solutions")),
    )
    op.create_index(
        op.f("ix_used_captcha_solutions_expires_at"), "used_captcha_solutions", ["expires_at"], unique=False
    )
    op.create_table(
        "sign_in_failures",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sign_in_failures")),
    )
    op.create_index(op.f("ix_sign_in_failures_last_attempt_at"), "sign_in_failures", ["last_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sign_in_failures_last_attempt_at"), table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_index(op.f("ix_used_captcha_solutions_expires_at"), table_name="used_captcha_solutions")
    op.drop_table("used_captcha_solutions")
