"""Retention times: defaults from the config, overridden at run time by admins (in the DB)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from release.config import RetentionSettings
from release.db.models import AuditEntry, Setting, utcnow

SHORT_KEY = "retention.short_hours"
LONG_KEY = "retention.long_days"
RECORD_KEY = "retention.record_days"
KEYS = {"short_hours": SHORT_KEY, "long_days": LONG_KEY, "record_days": RECORD_KEY}
# The same bounds as config.validate, so a value an admin may set is one a config may hold.
BOUNDS = {"short_hours": (1, 24 * 30), "long_days": (1, 365), "record_days": (1, 3650)}
LABELS = {"short_hours": "Short retention", "long_days": "Long retention", "record_days": "Record retention"}
UNITS = {"short_hours": "hours", "long_days": "days", "record_days": "days"}
# How long a process may keep using the retention it read (RetentionCache). A change made in
# this process applies at once; one made by another process (another gunicorn worker, the
# CLI) applies within this many seconds.
CACHE_SECONDS = 5.0
# Bumped whenever this process writes retention settings: every cache re-reads.
_generation = 0
_generation_lock = threading.Lock()


@dataclass(frozen=True)
class Retention:
    """How long unreported (short) and reported (long) copies, and our own records, are kept."""

    short_hours: int
    long_days: int
    record_days: int = RetentionSettings.record_days

    @property
    def short(self) -> timedelta:
        return timedelta(hours=self.short_hours)

    @property
    def long(self) -> timedelta:
        return timedelta(days=self.long_days)

    @property
    def records(self) -> timedelta:
        return timedelta(days=self.record_days)


class RetentionInvalid(ValueError):
    """Values an admin entered break a rule; ``errors`` maps each field to a plain message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = dict(errors)


_SETTINGS_QUERY = select(Setting.key, Setting.value).where(Setting.key.in_(KEYS.values()))


def current(session: Session, defaults: RetentionSettings) -> Retention:
    """The retention in force now: admin values where set, else the config defaults."""
    rows = dict(session.execute(_SETTINGS_QUERY).all())
    return Retention(
        short_hours=int(rows.get(SHORT_KEY, defaults.short_hours)),
        long_days=int(rows.get(LONG_KEY, defaults.long_days)),
        record_days=int(rows.get(RECORD_KEY, defaults.record_days)),
    )


def invalidate() -> None:
    """Make every RetentionCache in this process re-read on its next use."""
    global _generation
    with _generation_lock:
        _generation += 1


class RetentionCache:
    """The retention in force, re-read at most every ``ttl`` seconds: the report page needs
    it on every request and admins change it rarely (staleness bound: CACHE_SECONDS)."""

    def __init__(
        self, defaults: RetentionSettings, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.defaults = defaults
        self.ttl = ttl
        self.clock = clock
        self._entry: tuple[Retention, float, int] | None = None  # value, read at, generation

    def get(self, session: Session | Callable[[], Session]) -> Retention:
        """The cached retention, or a fresh read when it is older than ``ttl`` or invalidated.
        ``session`` may be a function that opens one: a page view that hits the cache then
        opens none."""
        entry, now = self._entry, self.clock()
        if entry is not None and entry[2] == _generation and now - entry[1] < self.ttl:
            return entry[0]
        generation = _generation  # taken before the read: a write meanwhile re-reads
        value = current(session if isinstance(session, Session) else session(), self.defaults)
        self._entry = (value, now, generation)  # one assignment: safe across threads
        return value


def validate(values: Mapping[str, int]) -> dict[str, str]:
    """Problems with ``values`` by field (empty when they may be saved)."""
    errors: dict[str, str] = {}
    for name, (low, high) in BOUNDS.items():
        if not low <= values[name] <= high:
            errors[name] = f"{LABELS[name]} must be between {low} and {high} {UNITS[name]}."
    if "long_days" not in errors and "short_hours" not in errors:
        if values["long_days"] * 24 <= values["short_hours"]:
            errors["long_days"] = "Long retention must be longer than short retention."
    if "record_days" not in errors and "long_days" not in errors:
        if values["record_days"] < values["long_days"]:
            errors["record_days"] = "Record retention must be at least as long as long retention."
    return errors


def set_retention(
    session: Session, values: Mapping[str, int], actor: str, defaults: RetentionSettings
) -> list[tuple[str, int, int]]:
    """Store new values with an audit entry per change (old → new), in the caller's
    transaction; returns the changes. Raises :class:`RetentionInvalid`."""
    wanted = {name: int(values[name]) for name in KEYS}
    errors = validate(wanted)
    if errors:
        raise RetentionInvalid(errors)
    before = asdict(current(session, defaults))
    changes = [(name, before[name], new) for name, new in wanted.items() if before[name] != new]
    for name, old, new in changes:
        key = KEYS[name]
        row = session.get(Setting, key, with_for_update=True)
        if row is None:
            session.add(Setting(key=key, value=str(new), updated_by=actor))
        else:
            row.value, row.updated_by, row.updated_at = str(new), actor, utcnow()
        session.add(AuditEntry(actor=actor, action="retention.changed", target=key, detail=f"{old} → {new}"))
    session.flush()
    if changes:
        # Now, so this process's caches do not keep the old values, and again after the
        # commit, so a read between flush and commit (old values) is not cached either.
        invalidate()
        event.listen(session, "after_commit", lambda _s: invalidate(), once=True)
    return changes
