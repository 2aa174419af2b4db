"""Alembic, driven from the app's own database settings (no alembic.ini to keep in sync).

``upgrade`` and ``downgrade`` return the revision before and after, read from the database
itself, so the operator is told what happened rather than what was asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from release.db.engine import Database
from release.paths import MIGRATIONS

if TYPE_CHECKING:
    from alembic.config import Config

# (before, after): None is an empty database (no alembic_version row).
Revisions = tuple[str | None, str | None]


def alembic_config(db: Database) -> Config:
    """An Alembic config that runs on ``db``'s engine (Alembic is imported only here: worker
    and web processes that never migrate do not pay its ~10 MB)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db.engine
    return config


def current_revision(db: Database) -> str | None:
    """The revision the database is at, or None when no migration has run on it."""
    from alembic.migration import MigrationContext

    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> Revisions:
    """Bring the schema to ``revision``; returns the revisions before and after."""
    from alembic import command

    before = current_revision(db)
    command.upgrade(alembic_config(db), revision)
    return before, current_revision(db)


def downgrade(db: Database, revision: str) -> Revisions:
    """Step the schema back to ``revision``; returns the revisions before and after."""
    from alembic import command

    before = current_revision(db)
    command.downgrade(alembic_config(db), revision)
    return before, current_revision(db)
