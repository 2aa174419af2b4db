"""Retention times: defaults from the config, overridden at run time by admins (in the DB)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from .config import RetentionSettings
from .models import Setting

SHORT_KEY = "retention.short_hours"
LONG_KEY = "retention.long_days"


@dataclass(frozen=True)
class Retention:
    """How long unreported (short) and reported (long) copies are kept."""

    short_hours: int
    long_days: int

    @property
    def short(self) -> timedelta:
        return timedelta(hours=self.short_hours)

    @property
    def long(self) -> timedelta:
        return timedelta(days=self.long_days)


def current(session: Session, defaults: RetentionSettings) -> Retention:
    """The retention in force now: admin values where set, else the config defaults."""
    rows = dict(session.execute(select(Setting.key, Setting.value).where(Setting.key.in_((SHORT_KEY, LONG_KEY)))).all())
    return Retention(
        short_hours=int(rows.get(SHORT_KEY, defaults.short_hours)),
        long_days=int(rows.get(LONG_KEY, defaults.long_days)),
    )
