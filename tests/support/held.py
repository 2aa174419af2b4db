"""The halon6 "ndr" fallback's world: a stack whose nodes are halon6 nodes (one pushing held
messages, one rejecting), the gateway's push, and reading the report mail it leads to."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from release.config import NodeSettings, settings_from_mapping
from release.core import links
from release.devtools.mailcapture import CaptureServer, text_and_html
from release.devtools.simulator import SimulatorServer
from tests.support.config import make_config
from tests.support.stack import Stack, stack_from_settings

PUSH_PATH = "/gateway/v1/held"
REPORT_URL_RE = re.compile(r"https://\S+/report\?\S+")


def halon6_node(name: str, api_url: str, sender_notice: str) -> dict[str, Any]:
    """A halon6 node's config table (its API is only called by the worker)."""
    return {
        "name": name,
        "type": "halon6",
        "api_url": api_url,
        "api_key": f"{name}-api-key-0123456789",
        "halon_version": "6.10",
        "sender_notice": sender_notice,
        "timeout_seconds": 2.0,
    }


def build_halon6_stack(database_url: str, simulator: SimulatorServer, smtp: CaptureServer) -> Stack:
    """A migrated stack with ``mx1`` (sender_notice "ndr") and ``mx2`` ("reject"), both halon6."""
    config = make_config(database_url, simulator, smtp.port)
    config["nodes"] = [halon6_node("mx1", simulator.url, "ndr"), halon6_node("mx2", simulator.url, "reject")]
    return stack_from_settings(settings_from_mapping(config), simulator, smtp)


def build_stack_with_nodes(
    database_url: str, simulator: SimulatorServer, smtp: CaptureServer, *nodes: NodeSettings
) -> Stack:
    """A migrated stack whose nodes are ``nodes`` (e.g. ``simulator.node_settings(...)``)."""
    settings = settings_from_mapping(make_config(database_url, simulator, smtp.port))
    return stack_from_settings(dataclasses.replace(settings, nodes=nodes), simulator, smtp)


def push_body(stack: Stack, message_id: str, *, node: str = "mx1", issued_at: int | None = None) -> dict[str, Any]:
    """The JSON a node's HSL posts: the fields of a correctly signed report link."""
    issued = int(time.time()) if issued_at is None else issued_at
    key = stack.services.settings.links.keys[0]
    return {"n": node, "m": message_id, "t": issued, "s": links.sign(key, node, message_id, issued)}


def push(client: FlaskClient, body: Any) -> TestResponse:
    """POST the body as the gateway does (JSON, no cookie, no CSRF token); any value, ``None`` too."""
    return client.post(PUSH_PATH, data=json.dumps(body), content_type="application/json")


def report_path_in(message: EmailMessage) -> str:
    """The path + query of the report link in a report mail's text part."""
    text, _html = text_and_html(message)
    match = REPORT_URL_RE.search(text)
    assert match, text
    parts = urlsplit(match.group(0))
    return f"{parts.path}?{parts.query}"
