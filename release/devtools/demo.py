"""Demo mode: the whole service on one machine with nothing installed.

A built-in Halon simulator (seeded with rejected messages), an in-process SMTP server that
captures mail, SQLite, ALTCHA and an in-process worker. The pages under /demo show sample
report links and the captured mail.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, render_template
from werkzeug.serving import BaseWSGIServer, make_server

from release.config import (
    AppSettings,
    CaptchaSettings,
    DatabaseSettings,
    LinksSettings,
    Settings,
    SmtpSettings,
    validate,
)
from release.container import Services
from release.core import links
from release.db import migrate
from release.devtools.mailcapture import CaptureServer, text_and_html
from release.devtools.serving import UnversionedHandler
from release.devtools.simulator import HalonSimulator, SimulatorServer, seed_demo
from release.jobs.worker import Worker, start_in_thread
from release.paths import INSTANCE

bp = Blueprint("demo", __name__, url_prefix="/demo")
NODE = "mx1"
# The gateway generation the demo simulates: 6.x by default, the one people install today.
GATEWAYS = {"halon6": 6, "halon5": 5}


@dataclass
class DemoRuntime:
    """Everything demo mode started, so it can be shown and stopped."""

    app: Flask
    server: BaseWSGIServer
    simulator: SimulatorServer
    mailbox: CaptureServer
    worker: Worker
    transactions: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def report_links(self) -> list[tuple[str, str]]:
        """(subject, signed report link) for every seeded message."""
        settings: Settings = self.app.extensions["release"].settings
        now = int(time.time())
        result = []
        for tx in self.transactions:
            copies = self.simulator.sim.copies(tx)
            issued = int(copies[0].ts) if copies else now
            url = links.build_report_url(settings.app.public_url, settings.links.keys[0], NODE, tx, issued)
            result.append((copies[0].subject if copies else tx, url))
        return result

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.worker.stop()
        self.simulator.stop()
        self.mailbox.stop()
        services: Services = self.app.extensions["release"]
        close = getattr(services.mailer, "close", None)
        if close:
            close()
        services.db.dispose()


def _placeholder(_environ: Any, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


def start_demo(
    host: str = "127.0.0.1", port: int = 5000, instance: Path | None = None, gateway: str = "halon6"
) -> DemoRuntime:
    """Start every demo part; the web server is bound but not yet serving."""
    if gateway not in GATEWAYS:
        raise ValueError(f"DEMO_GATEWAY must be one of {', '.join(GATEWAYS)}, not {gateway!r}")
    from release import create_app

    instance = instance or INSTANCE
    instance.mkdir(parents=True, exist_ok=True)
    database = instance / "demo.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    server = make_server(host, port, _placeholder, threaded=True, request_handler=UnversionedHandler)
    public_url = f"http://{host}:{server.server_port}"
    simulator = SimulatorServer(
        HalonSimulator(
            users={"release": secrets.token_urlsafe(16)},
            generation=GATEWAYS[gateway],
            api_keys=[secrets.token_urlsafe(24)],
        )
    ).start()
    transactions = seed_demo(simulator.sim)
    mailbox = CaptureServer().start()
    settings = Settings(
        app=AppSettings(public_url=public_url, secret_key=secrets.token_urlsafe(32), demo=True),
        database=DatabaseSettings(url=f"sqlite:///{database}"),
        links=LinksSettings(keys=(secrets.token_urlsafe(24),)),
        captcha=CaptchaSettings(provider="altcha", altcha_max_number=50_000),
        smtp=SmtpSettings(
            host="127.0.0.1", port=mailbox.port, security="none", sender="Message release (demo) <release@demo.test>"
        ),
        nodes=(simulator.node_settings(NODE),),
    )
    validate(settings)
    app = create_app(settings)
    services: Services = app.extensions["release"]
    migrate.upgrade(services.db)
    worker = services.build_worker(in_process=True)
    start_in_thread(worker)
    runtime = DemoRuntime(app, server, simulator, mailbox, worker, transactions)
    app.extensions["release_demo"] = runtime
    server.app = app
    return runtime


def _runtime() -> DemoRuntime:
    runtime: DemoRuntime | None = current_app.extensions.get("release_demo")
    if runtime is None:
        abort(404)
    return runtime


@bp.get("/")
def index() -> str:
    """Sample report links, the captured mailbox and the simulator's queue."""
    runtime = _runtime()
    return render_template(
        "demo/index.html",
        report_links=runtime.report_links(),
        simulator_url=runtime.simulator.url,
        generation=runtime.simulator.sim.generation,
    )


@bp.get("/mail")
def mailbox() -> str:
    """What recipients would have received."""
    messages = [(m, text_and_html(m.message)[0]) for m in _runtime().mailbox.messages()]
    return render_template("demo/mail.html", messages=messages)


@bp.get("/mail/<int:index>.html")
def mail_html(index: int) -> Response:
    """The HTML part of one captured mail, sandboxed: no script, no network."""
    messages = _runtime().mailbox.messages()
    if not 0 <= index < len(messages):
        abort(404)
    html = text_and_html(messages[index].message)[1] or "<p>(no HTML part)</p>"
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'; style-src 'unsafe-inline'"
    return response


def main(host: str = "127.0.0.1", port: int = 5000, gateway: str = "halon6") -> None:
    """`python app.py` without a config: start the demo and print where to click."""
    runtime = start_demo(host, port, gateway=gateway)
    print(f"\nDemo running at {runtime.url}/demo/  (Ctrl+C to stop), simulating a {gateway} node\n")  # noqa: T201
    print("Report links, as a rejected sender would receive them:")  # noqa: T201
    for subject, url in runtime.report_links():
        print(f"  {subject}\n    {url}")  # noqa: T201
    print(f"\nCaptured mail: {runtime.url}/demo/mail    Gateway simulator: {runtime.simulator.url}/\n")  # noqa: T201
    try:
        runtime.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()
