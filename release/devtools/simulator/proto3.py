"""A strict proto3-JSON reader and writer, small enough for the few messages Halon's queue API has.

Reading follows what a protobuf JSON parser does with a message it was built for: a key that
is not a field of the message is refused and named by its path (``payload.paging``), a
wrong type is refused, ``null`` means "not set", 64-bit integers come as a JSON number or a
decimal string. Writing leaves out fields at their default value (``""``, ``0``, ``false``,
empty list or map), so a client can never rely on their presence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from release.devtools.simulator.errors import ApiError

# A field reader: (value, path) -> parsed value. Readers never see None (null is "not set").
Reader = Callable[[Any, str], Any]


def refuse(path: str, problem: str) -> ApiError:
    """The 400 a protobuf JSON parser answers, naming the field."""
    return ApiError(400, f"invalid request: {path or 'request'}: {problem}")


def message(fields: Mapping[str, Reader]) -> Reader:
    """A message: an object whose keys must all be fields; unset fields are left out."""

    def read(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise refuse(path, "expected an object")
        parsed: dict[str, Any] = {}
        for key, raw in value.items():
            where = f"{path}.{key}" if path else key
            if key not in fields:
                raise refuse(where, "cannot find field")
            if raw is not None:
                parsed[key] = fields[key](raw, where)
        return parsed

    return read


def repeated(item: Reader) -> Reader:
    """A repeated field: a JSON list of ``item``."""

    def read(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise refuse(path, "expected a list")
        return [item(entry, f"{path}[{i}]") for i, entry in enumerate(value)]

    return read


def string(value: Any, path: str) -> str:
    """A string field."""
    if not isinstance(value, str):
        raise refuse(path, "expected a string")
    return value


def integer(value: Any, path: str) -> int:
    """An integer field: a JSON integer or a decimal string (proto3 JSON writes int64 as one)."""
    if isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise refuse(path, "expected an integer (a number or a decimal string)")


def string_map(value: Any, path: str) -> dict[str, str]:
    """A ``map<string, string>`` (Halon's metadata)."""
    if not isinstance(value, dict):
        raise refuse(path, "expected an object of strings")
    return {key: string(raw, f"{path}.{key}") for key, raw in value.items()}


def enum(names: Sequence[str], numbers: Mapping[int, str] | None = None) -> Reader:
    """An enum given by name, or by one of the ``numbers`` known for it; returns the name."""

    def read(value: Any, path: str) -> str:
        if isinstance(value, str) and value in names:
            return value
        if numbers and isinstance(value, int) and not isinstance(value, bool) and value in numbers:
            return numbers[value]
        raise refuse(path, f"invalid enum value {value!r}")

    return read


def unsimulated(value: Any, path: str) -> Any:
    """A field Halon has but this simulator does not implement: refused, and said so."""
    raise ApiError(400, f"{path}: attested in Halon's material but not implemented by the simulator")


def without_defaults(value: Any) -> Any:
    """``value`` as proto3 JSON writes it: default-valued fields (and emptied messages) left out.

    For messages only: a map keeps every entry, so add maps after pruning.
    """
    if isinstance(value, dict):
        pruned = {k: without_defaults(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if not _is_default(v)}
    if isinstance(value, list):
        return [without_defaults(v) for v in value]
    return value


def _is_default(value: Any) -> bool:
    return value is None or value is False or value in ("", 0) or value == [] or value == {}
