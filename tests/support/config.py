"""Production-shaped configurations for tests: real random secrets, never demo defaults."""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from release.config import Settings, settings_from_mapping
from release.devtools.simulator import SimulatorServer
from tests.support.fakes import LONG, NODE, SHORT


def make_config(
    database_url: str, simulator: SimulatorServer, smtp_port: int, **sections: dict[str, Any]
) -> dict[str, Any]:
    """A production-shaped configuration (real random secrets, not demo)."""
    config: dict[str, Any] = {
        "app": {"public_url": "https://release.example.test", "secret_key": secrets.token_urlsafe(32)},
        "database": {"url": database_url},
        "links": {"keys": [secrets.token_urlsafe(24)]},
        "captcha": {"provider": "altcha", "altcha_max_number": 2000},
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "sender": "Release <release@example.test>",
        },
        "worker": {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2, "max_attempts": 5},
        "nodes": [node_config(simulator)],
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


def node_config(simulator: SimulatorServer, name: str = "mx1") -> dict[str, Any]:
    """The ``[[nodes]]`` table for the simulator's generation and credentials (non-defaults only)."""
    node = simulator.node_settings(name, timeout_seconds=2.0)
    return {f.name: getattr(node, f.name) for f in dataclasses.fields(node) if getattr(node, f.name) != f.default}


def make_settings(database_url: str) -> Settings:
    """Settings for the flow tests: a fake node with named short and long quarantines."""
    return settings_from_mapping(
        {
            "app": {"public_url": "https://release.example.test", "secret_key": secrets.token_urlsafe(32)},
            "database": {"url": database_url},
            "links": {"keys": [secrets.token_urlsafe(24)]},
            "captcha": {"provider": "altcha", "altcha_max_number": 2000},
            "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none", "sender": "Release <release@example.test>"},
            "worker": {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2, "max_attempts": 5},
            "nodes": [
                {
                    "name": NODE,
                    "api_url": "https://mx1.test",
                    "username": "release",
                    "password": "sim-password-0123",
                    "short_quarantine": SHORT,
                    "long_quarantine": LONG,
                }
            ],
        }
    )


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """``config`` (as :func:`make_config` builds it) as the TOML file a process reads from
    RELEASE_CONFIG: tables of scalars and lists, and ``nodes`` as an array of tables."""
    lines: list[str] = []
    for section, values in config.items():
        for table in values if isinstance(values, list) else [values]:
            lines.append(f"[[{section}]]" if isinstance(values, list) else f"[{section}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: the same quoting and escapes
    return repr(value)
