"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from release import migrate
from release.db import Database
from release.models import Base


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
