"""`python app.py` with a config: one gunicorn process serving web requests, with the job
worker running in a thread of the same process. For more capacity run `gunicorn app:app`
and `flask --app app worker` processes against PostgreSQL instead."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from release import create_app
from release.container import Services
from release.db import migrate
from release.jobs.worker import start_in_thread


class SingleProcessServer(BaseApplication):
    """Gunicorn with one worker process; the app (and job worker) is built in that process."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        app = create_app()
        services: Services = app.extensions["release"]
        migrate.upgrade(services.db)
        start_in_thread(services.build_worker(in_process=True))
        return app


def main() -> None:
    """Serve on RELEASE_BIND (default 127.0.0.1:5000)."""
    bind = os.environ.get("RELEASE_BIND", "127.0.0.1:5000")
    SingleProcessServer({"bind": bind, "workers": 1, "threads": 8, "accesslog": "-"}).run()
