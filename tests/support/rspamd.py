"""An rspamd node for the service's own tests: its config, a stack with it, messages as
Rspamd's exporter pushes them, and a stand-in controller for learn-ham (real HTTP).

The real Postfix + Rspamd run in tests/mta/; here the push is made as the exporter makes
it (the same path, Basic auth and X-Rspamd-* headers), so the service side is tested on
both databases without the daemons.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.test import TestResponse
from werkzeug.wrappers import Request, Response

from release.config import NodeSettings, settings_from_mapping
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from tests.support.config import make_config
from tests.support.stack import Stack, stack_from_settings

NODE = "mx3"
PUSH_PASSWORD = "push-password-for-mx3-0123456789"
CONTROLLER_PASSWORD = "controller-password-0123456789"
SENDER = "anna@partner.example"
RECIPIENTS = ("alice@example.com", "bob@example.com")


def rspamd_node(relay_port: int, **extra: Any) -> dict[str, Any]:
    """The ``[[nodes]]`` table of an rspamd node re-injecting into 127.0.0.1:``relay_port``."""
    return {
        "name": NODE,
        "type": "rspamd",
        "push_password": PUSH_PASSWORD,
        "relay_host": "127.0.0.1",
        "relay_port": relay_port,
        "timeout_seconds": 2.0,
        **extra,
    }


def rspamd_node_settings(relay_port: int, **extra: Any) -> NodeSettings:
    """Settings of the rspamd node ``mx3`` re-injecting into 127.0.0.1:``relay_port``, for
    tests of its gateway without the web app (``extra``: more keys, timeout_seconds 2.0)."""
    return NodeSettings(**{"name": NODE, "type": "rspamd", "push_password": "p" * 20, "relay_host": "127.0.0.1",
                           "relay_port": relay_port, "timeout_seconds": 2.0, **extra})  # fmt: skip


def build_rspamd_stack(
    database_url: str,
    simulator: SimulatorServer,
    smtp: CaptureServer,
    relay_port: int,
    *,
    sections: dict[str, dict[str, Any]] | None = None,
    **node: Any,
) -> Stack:
    """A migrated stack whose only node is the rspamd node ``mx3``, re-injecting into
    127.0.0.1:``relay_port`` (``node``: more of its keys,
    ``sections``: more config sections)."""
    config = make_config(database_url, simulator, smtp.port, **(sections or {}))
    config["nodes"] = [rspamd_node(relay_port, **node)]
    return stack_from_settings(settings_from_mapping(config), simulator, smtp)


def raw_message(subject: str = "Invoice 2026-118", body: str = "Please find the invoice attached.\n",
                sender: str = SENDER, to: Sequence[str] = RECIPIENTS) -> bytes:  # fmt: skip
    """A message as Postfix hands it to Rspamd: its Received line first, CRLF line ends."""
    msg = EmailMessage()
    msg["From"] = f"Anna Partner <{sender}>"
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 12, 5, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain="partner.example")
    msg.set_content(body)
    received = "Received: from mail.partner.example (mail.partner.example [198.51.100.7])\r\n\tby mx3.example.com (Postfix) with ESMTPS id 4Qx9Lm2Zb7z9\r\n\tfor <alice@example.com>; Sat, 5 Dec 2026 09:30:02 +0000 (UTC)\r\n"  # noqa: E501
    return received.encode() + msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def exporter_headers(
    *, sender: str = SENDER, recipients: Sequence[str] = RECIPIENTS, queue_id: str = "4Qx9Lm2Zb7z9"
) -> dict[str, str]:
    """The X-Rspamd-* headers metadata_exporter adds with ``meta_headers = true``."""
    symbols = [{"name": "GTUBE", "score": 0.0, "metric_score": 0.0}, {"name": "R_SPF_ALLOW", "score": -0.2}]
    return {
        "X-Rspamd-from": sender,
        "X-Rspamd-rcpt": json.dumps(list(recipients)),
        "X-Rspamd-qid": queue_id,
        "X-Rspamd-ip": "198.51.100.7",
        "X-Rspamd-score": "15.00",
        "X-Rspamd-action": "reject",
        "X-Rspamd-user": "unknown",
        "X-Rspamd-symbols": json.dumps(symbols),
        "X-Rspamd-subject": "Invoice",
    }


def push(
    client: FlaskClient,
    content: bytes,
    *,
    node: str = NODE,
    password: str | None = PUSH_PASSWORD,
    user: str | None = None,
    headers: dict[str, str] | None = None,
    content_type: str = "message/rfc822",
) -> TestResponse:
    """POST as the exporter does: Basic auth (``password=None``: none), raw body, metadata headers."""
    sent = exporter_headers() if headers is None else headers
    auth = None if password is None else (user or node, password)
    return client.post(f"/gateway/v1/rspamd/{node}", data=content, headers=sent, auth=auth,
                       content_type=content_type)  # fmt: skip


class Controller:
    """A stand-in Rspamd controller over real HTTP: /learnham and /stat behind a password."""

    def __init__(self, password: str = CONTROLLER_PASSWORD, status: int = 200) -> None:
        self.password = password
        self.status = status  # what /learnham answers (200, 208, 500...)
        self.learned: list[bytes] = []
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def start(self) -> Controller:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @Request.application  # type: ignore[arg-type]
    def _app(self, request: Request) -> Response:
        if request.headers.get("Password") != self.password:
            return Response('{"error":"Unauthorized"}', 403, content_type="application/json")
        if request.path == "/learnham" and request.method == "POST":
            if self.status == 200:
                self.learned.append(request.get_data())
            return Response('{"success":true}', self.status, content_type="application/json")
        if request.path == "/stat":
            return Response(json.dumps({"learned": len(self.learned)}), 200, content_type="application/json")
        return Response("not found", 404)
