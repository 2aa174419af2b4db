"""Gunicorn hooks and settings (`gunicorn -c python:release.gunicorn_hooks app:app`): a
configuration mistake stops the master before it forks, prometheus_client's multiprocess
mode, and the header size an rspamd node's push needs."""

from __future__ import annotations

from typing import Any

from release.ops.metrics import multiprocess_dir
from release.ops.startup import check_settings

# An rspamd node's push names the envelope's recipients in one header (X-Rspamd-rcpt, JSON):
# up to 1000 of them, beyond gunicorn's default of 8190 bytes a header (docs/rspamd/).
limit_request_field_size = 65536


def on_starting(_server: Any) -> None:
    """Check the configuration once, in the master: one line and exit status 4 on a mistake,
    instead of the same line from every worker (app.py does the same in each worker)."""
    check_settings()


def child_exit(_server: Any, worker: Any) -> None:
    """Drop a dead worker's live-gauge files so /metrics stops summing them."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
