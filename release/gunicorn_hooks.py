"""Gunicorn hooks for prometheus_client's multiprocess mode: `gunicorn -c python:release.gunicorn_hooks app:app`."""

from __future__ import annotations

from typing import Any

from release.ops.metrics import multiprocess_dir


def child_exit(_server: Any, worker: Any) -> None:
    """Drop a dead worker's live-gauge files so /metrics stops summing them."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
