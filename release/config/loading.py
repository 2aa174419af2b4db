"""Read the TOML file, apply ``RELEASE_<SECTION>__<KEY>`` environment overrides, coerce types.

Every problem raises :class:`ConfigError` naming the offending key and where its value came
from (the file, or the ``RELEASE_*`` variable), so an operator sees at start-up what to fix
and where: a key can be set in two places, and the wrong one is easy to edit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from typing import Any

from release.config.settings import SECTIONS, ConfigError, NodeSettings, Settings
from release.config.validation import validate

ENV_PREFIX = "RELEASE_"


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file at ``path`` (if any), apply ``RELEASE_*`` overrides, validate."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("RELEASE_CONFIG", f"file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("RELEASE_CONFIG", f"{path} is not valid TOML: {exc}") from None
    merged, variables = _merge_env(data, environ)
    try:
        return settings_from_mapping(merged)
    except ConfigError as exc:
        if exc.source is not None:
            raise
        raise _with_source(exc, None if path is None else os.fspath(path), merged, variables, environ) from None


def apply_env_overrides(data: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``RELEASE_<SECTION>__<KEY>`` variables applied.

    Nodes are addressed by name: ``RELEASE_NODES__MX1__PASSWORD`` sets the password of node
    ``mx1`` (so secrets can stay out of the file).
    """
    return _merge_env(data, environ)[0]


def _merge_env(data: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Apply the overrides; also return which variable set each key (``smtp.port``, ``nodes[0].password``)."""
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    nodes = [dict(n) for n in data.get("nodes", []) if isinstance(n, Mapping)]
    from_env: dict[str, str] = {}  # node name -> a variable that created it (not in the file)
    variables: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if parts[0] == "nodes" and len(parts) == 3:
            node_name = parts[1].replace("_", "-")
            target = next((n for n in nodes if n.get("name") == node_name), None)
            if target is None:
                target = {"name": node_name}
                nodes.append(target)
                from_env[node_name] = name
            target[parts[2]] = value
            variables[f"nodes[{nodes.index(target)}].{parts[2]}"] = name
        elif len(parts) == 2 and parts[0] in SECTIONS:
            merged.setdefault(parts[0], {})[parts[1]] = value
            variables[f"{parts[0]}.{parts[1]}"] = name
    for node in nodes:
        if node["name"] in from_env and "api_url" not in node and "type" not in node:
            # Most likely a typo in the node's name: say which variable, not "nodes[1].api_url".
            known = ", ".join(str(n.get("name")) for n in nodes if n["name"] not in from_env) or "none"
            raise ConfigError(
                from_env[node["name"]],
                f"names node {node['name']!r}, which the config does not define (nodes: {known}); "
                "a whole node from the environment needs its TYPE (and a Halon node its API_URL) too",
                source=from_env[node["name"]],
            )
    if nodes:
        merged["nodes"] = nodes
    return merged, variables


def _with_source(
    exc: ConfigError,
    path: str | None,
    merged: Mapping[str, Any],
    variables: Mapping[str, str],
    environ: Mapping[str, str],
) -> ConfigError:
    """``exc`` again, naming the variable that set the key, else the file (and the variable that could)."""
    base = _KEY_BASE.match(exc.key)
    key = base[0] if base else exc.key
    variable = variables.get(key)
    if variable is not None:
        empty = " (the variable is set but empty)" if environ.get(variable) == "" else ""
        return ConfigError(exc.key, exc.message + empty, source=variable)
    message = exc.message
    if base and not _in_mapping(merged, key):
        # Set nowhere: say both places it could come from; secrets belong in the variable.
        message += f"; neither {'the file' if path else 'a config file'} nor {_variable_for(merged, key)} sets it"
    return ConfigError(exc.key, message, source=path)


# "app.secret_key" of "app.secret_key", "links.keys" of "links.keys[0]", "nodes[1].password".
_KEY_BASE = re.compile(r"(?:nodes\[\d+\]|[a-z_]+)\.[a-z_]+")


def _in_mapping(merged: Mapping[str, Any], key: str) -> bool:
    table, _, name = key.partition(".")
    return name in _table(merged, table)


def _variable_for(merged: Mapping[str, Any], key: str) -> str:
    """The ``RELEASE_*`` variable that sets ``key`` (a node's by its name)."""
    table, _, name = key.partition(".")
    if table.startswith("nodes["):
        node_name = str(_table(merged, table).get("name", "<NAME>"))
        return f"{ENV_PREFIX}NODES__{node_name.replace('-', '_').upper()}__{name.upper()}"
    return f"{ENV_PREFIX}{table.upper()}__{name.upper()}"


def _table(merged: Mapping[str, Any], table: str) -> Mapping[str, Any]:
    """The section ``app`` or the node ``nodes[1]`` of ``merged``; empty when absent."""
    found: Any = merged.get(table)
    if table.startswith("nodes["):
        nodes, index = merged.get("nodes", []), int(table[6:-1])
        found = nodes[index] if isinstance(nodes, list) and index < len(nodes) else None
    return found if isinstance(found, Mapping) else {}


def settings_from_mapping(data: Mapping[str, Any]) -> Settings:
    """Build and validate :class:`Settings` from a parsed TOML-like mapping."""
    unknown = set(data) - set(SECTIONS) - {"nodes"}
    if unknown:
        raise ConfigError(sorted(unknown)[0], "unknown section")
    sections = {name: _build(cls, name, data.get(name, {})) for name, cls in SECTIONS.items()}
    raw_nodes = data.get("nodes", [])
    if not isinstance(raw_nodes, list):
        raise ConfigError("nodes", "must be an array of tables ([[nodes]])")
    nodes = tuple(
        _build(NodeSettings, f"nodes[{i}]", _retire_node_keys(f"nodes[{i}]", raw)) for i, raw in enumerate(raw_nodes)
    )
    settings = Settings(nodes=nodes, **sections)
    validate(settings)
    return settings


def _retire_node_keys(prefix: str, raw: Any) -> Any:
    """Drop ``delete_shape = "action"`` (what every delete sends now); refuse any other value."""
    if not isinstance(raw, Mapping) or "delete_shape" not in raw:
        return raw
    if raw["delete_shape"] != "action":
        raise ConfigError(
            f"{prefix}.delete_shape",
            'is no longer used: Halon documents only "action": "DELETE"; remove this line',
        )
    return {k: v for k, v in raw.items() if k != "delete_shape"}


def _build(cls: type, prefix: str, raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix, "must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise ConfigError(f"{prefix}.{key}", "unknown key")
    values = {key: _coerce(f"{prefix}.{key}", hints[key], value) for key, value in raw.items()}
    try:
        return cls(**values)
    except TypeError:
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values]
        raise ConfigError(f"{prefix}.{missing[0] if missing else '?'}", "is required") from None


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Convert a TOML or environment value to the field's type, or raise ConfigError."""
    if typing.get_origin(hint) is dict:
        return _coerce_table(key, value)
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = _parse_list(key, value)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, "must be a list of strings")
        return tuple(value)
    if hint == (float | None):
        return None if value is None or value == "" else _coerce(key, float, value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(key, "must be true or false")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(key, f"must be a number, not {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"must be a number, not {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        return value
    raise ConfigError(key, f"unsupported type {hint}")  # pragma: no cover - programming error


def _coerce_table(key: str, value: Any) -> dict[str, str]:
    """A string-to-string table (TOML inline table, or JSON object from the environment)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(key, "must be a JSON object") from None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(key, "must be a table of strings")
    return dict(value)


def _parse_list(key: str, value: str) -> list[str]:
    if value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(key, "must be a JSON list or comma-separated") from None
        return list(parsed) if isinstance(parsed, list) else [parsed]
    return [part.strip() for part in value.split(",") if part.strip()]
