"""Where the project's files are: one place, so moving a module never moves a folder."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = PROJECT_ROOT / "templates"
STATIC = PROJECT_ROOT / "static"
INSTANCE = PROJECT_ROOT / "instance"
MIGRATIONS = PROJECT_ROOT / "migrations"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
