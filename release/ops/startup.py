"""Start-up with a configuration mistake: one line that names the key, not a traceback.

Used at the process edges only (``app.py``, the gunicorn hooks): below them a
:class:`ConfigError` stays an exception, so tests and callers can catch it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from release.config import ConfigError

# Gunicorn's "App failed to load" status: a worker exiting with it stops the master, where any
# other status has the master start a fresh worker that fails the same way, forever.
CONFIG_ERROR_EXIT = 4


@contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a :class:`ConfigError` raised inside into ``configuration error: ...`` on stderr
    and exit status :data:`CONFIG_ERROR_EXIT`; every other exception passes unchanged."""
    try:
        yield
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from None


def check_settings() -> None:
    """Load the settings the app will load (file and environment), exiting on a mistake."""
    from release import settings_from_env

    with exit_on_config_error():
        settings_from_env()
