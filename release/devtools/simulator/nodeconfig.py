"""What the simulator command prints and reads: the ``[[nodes]]`` block, ``--users`` and ``--add``.

The block is the one thing an operator copies from the simulator into the service's config,
so it is checked here by the service's own config loader before it is printed: a block
that prints is a block that loads.
"""

from __future__ import annotations

import json
import secrets
import tomllib
from dataclasses import dataclass
from typing import Any

from release.config import settings_from_mapping
from release.devtools.simulator.node import DEFAULT_USERNAME, HalonSimulator


@dataclass(frozen=True)
class NewMessage:
    """One ``--add sender,recipient[;recipient2],subject``."""

    sender: str
    recipients: list[str]
    subject: str


def parse_add(value: str) -> NewMessage:
    """Split ``sender,recipient[;recipient2],subject``; the subject may hold commas."""
    parts = value.split(",", 2)
    if len(parts) != 3:
        raise ValueError("expected sender,recipient[;recipient2],subject")
    sender, recipients, subject = (p.strip() for p in parts)
    rcpts = [r.strip() for r in recipients.split(";") if r.strip()]
    if not sender or not rcpts:
        raise ValueError("a message needs a sender and at least one recipient")
    return NewMessage(sender, rcpts, subject)


def parse_user(value: str) -> tuple[str, str]:
    """``username:password`` for a 5.x Basic user (the password may hold colons)."""
    username, sep, password = value.partition(":")
    if not sep or not username or not password:
        raise ValueError("expected username:password")
    return username, password


def random_credentials(generation: int) -> tuple[dict[str, str], list[str]]:
    """Fresh Basic user (5.x) or API key (6.x), printed once, so no shared default is ever pasted."""
    if generation == 5:
        return {DEFAULT_USERNAME: secrets.token_urlsafe(24)}, []
    return {}, [secrets.token_urlsafe(32)]


def node_values(sim: HalonSimulator, name: str, api_url: str) -> dict[str, Any]:
    """The node's config keys for the simulator's generation (first user or key)."""
    values: dict[str, Any] = {"name": name}
    if sim.generation == 5:
        username, password = next(iter(sim.users.items()))
        values.update(type="halon5", api_url=api_url, username=username, password=password)
        values.update(short_quarantine="mailquarantine:1", long_quarantine="mailquarantine:2")
    else:
        values.update(type="halon6", api_url=api_url, api_key=sim.api_keys[0], halon_version=f"6.{sim.minor}")
        values.update(short_quarantine=f"{sim.marker_key}=1day", long_quarantine=f"{sim.marker_key}=7days")
    return values


def node_block(values: dict[str, Any]) -> str:
    """The values as a TOML ``[[nodes]]`` table (JSON strings are valid TOML basic strings)."""
    lines = ["[[nodes]]"] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def check_block(block: str) -> None:
    """Load ``block`` as the service would, in a production config; raises ConfigError."""
    node = tomllib.loads(block)["nodes"][0]
    filler = secrets.token_urlsafe(24)
    settings_from_mapping(
        {
            "app": {"public_url": "https://release.example.com", "secret_key": filler},
            "links": {"keys": [filler]},
            "captcha": {"provider": "altcha"},
            "nodes": [node],
        }
    )


__all__ = [
    "NewMessage",
    "check_block",
    "node_block",
    "node_values",
    "parse_add",
    "parse_user",
    "random_credentials",
]
