"""admin console: accounts, audit log, enforce and delete jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:38:20.172376
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('locate', 'notify', 'release')"
NEW_KINDS = "kind IN ('locate', 'notify', 'release', 'delete', 'enforce')"
ONE_QUEUED_ENFORCE = "kind = 'enforce' AND state = 'queued'"


def upgrade() -> None:
    op.create_table(
        "admin_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("session_nonce", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'viewer')", name=op.f("ck_admin_users_role_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_users")),
        sa.UniqueConstraint("username", name=op.f("uq_admin_users_username")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)

    # Autogenerate does not compare CHECK constraints: the new job kinds are added by hand.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_kind_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_jobs_kind_valid"), NEW_KINDS)
        batch_op.create_index(
            "uq_jobs_one_queued_enforce",
            ["kind"],
            unique=True,
            sqlite_where=sa.text(ONE_QUEUED_ENFORCE),
            postgresql_where=sa.text(ONE_QUEUED_ENFORCE),
        )


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE kind IN ('delete', 'enforce')")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("uq_jobs_one_queued_enforce")
        batch_op.drop_constraint(op.f("ck_jobs_kind_valid"), type_="check")
        batch_op.create_check_constraint(op.f("ck_jobs_kind_valid"), OLD_KINDS)

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
    op.drop_table("admin_users")
