"""Alembic, driven from the app's own database settings (no alembic.ini to keep in sync)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from .db import Database
from .services import ROOT

MIGRATIONS = ROOT / "migrations"


def alembic_config(db: Database) -> Config:
    """An Alembic config that runs on ``db``'s engine."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db.engine
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``."""
    command.upgrade(alembic_config(db), revision)


def downgrade(db: Database, revision: str) -> None:
    """Step the schema back to ``revision``."""
    command.downgrade(alembic_config(db), revision)
