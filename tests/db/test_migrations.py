"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from release.core.notify import COUNTED_NOTIFICATIONS
from release.db import migrate
from release.db.engine import Database
from release.db.models import Base, utcnow


# SQLite cannot reflect expression indexes, so compare_metadata skips that one there; the
# next test checks it exists and serves the cap query on both databases.
@pytest.mark.filterwarnings(
    "ignore:autogenerate skipping metadata-specified expression-based index",
    "ignore:Skipped unsupported reflection of expression-based index",
)
def test_migrations_match_the_models_and_downgrade_cleanly(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
        migrate.downgrade(db, "base")
        migrate.upgrade(db)
    finally:
        db.dispose()


def test_notification_cap_query_uses_the_case_insensitive_index(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        # The query the worker runs, with a batch of two addresses.
        recent = COUNTED_NOTIFICATIONS.params(addresses=["rita@example.com", "ola@example.com"], since=utcnow())
        sql = str(recent.compile(db.engine, compile_kwargs={"literal_binds": True}))
        with db.engine.connect() as connection:
            if db.is_postgres:
                connection.execute(text("SET enable_seqscan = off"))  # empty table: force the planner's hand
                plan = "\n".join(row[0] for row in connection.execute(text("EXPLAIN " + sql)))
            else:
                plan = "\n".join(str(row[-1]) for row in connection.execute(text("EXPLAIN QUERY PLAN " + sql)))
        assert "ix_recipients_lower_address_notified_at" in plan, plan
    finally:
        db.dispose()
