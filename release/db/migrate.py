"""Alembic, driven from the app's own database settings (no alembic.ini to keep in sync)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from release.db.engine import Database
from release.paths import MIGRATIONS

if TYPE_CHECKING:
    from alembic.config import Config


def alembic_config(db: Database) -> Config:
    """An Alembic config that runs on ``db``'s engine (Alembic is imported only here: worker
    and web processes that never migrate do not pay its ~10 MB)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db.engine
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``."""
    from alembic import command

    command.upgrade(alembic_config(db), revision)


def downgrade(db: Database, revision: str) -> None:
    """Step the schema back to ``revision``."""
    from alembic import command

    command.downgrade(alembic_config(db), revision)
