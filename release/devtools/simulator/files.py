"""The 5.x VM's file API, as halon/web-logui's inc/eml.php reads a queued message:

- ``GET /api/5.3.0/system/files?path=&offset=&limit=`` answers ``{"data": base64, "size":
  bytes in this answer, "offset": where the next read starts}``; a size below ``limit``
  means the end of the file.
- ``POST /api/5.3.0/system/files:size?path=`` (no body) answers ``{"size": whole file}``.

Only the ``.eml`` of a message still queued is there. A ``.hqf``'s binary records (which
web-logui also reads) are not simulated. Parameters are checked as strictly as the
protobuf payloads: unknown, repeated, missing or malformed ones are refused with 400.
"""

from __future__ import annotations

import base64
from typing import Any

from werkzeug.wrappers import Request

from release.devtools.simulator.errors import ApiError
from release.devtools.simulator.store import SimQueue

FILES_PATH = "/api/5.3.0/system/files"
FILES_SIZE_PATH = "/api/5.3.0/system/files:size"
MAX_INT64 = 2**63 - 1


def read_file(store: SimQueue, request: Request) -> dict[str, Any]:
    """``GET system/files``: up to ``limit`` bytes of the file from ``offset``."""
    params = _params(request, ("path", "offset", "limit"))
    offset, limit = _number(params, "offset", 0), _number(params, "limit", 1)
    data = _file(store, params["path"])[offset : offset + limit]
    return {"data": base64.b64encode(data).decode("ascii"), "size": len(data), "offset": offset + len(data)}


def file_size(store: SimQueue, request: Request) -> dict[str, Any]:
    """``POST system/files:size``: the whole file's size."""
    params = _params(request, ("path",))
    if request.get_data():
        raise ApiError(400, "invalid request: files:size takes its path as a query parameter and no body")
    return {"size": len(_file(store, params["path"]))}


def _file(store: SimQueue, path: str) -> bytes:
    if path.endswith(".hqf"):
        raise ApiError(400, f"path: {path!r} is a .hqf file: attested (web-logui reads it), not simulated")
    data = store.file(path)
    if data is None:
        raise ApiError(404, f"no such file: {path!r}")
    return data


def _params(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """Exactly the query parameters ``names``, each once."""
    for key in request.args:
        if key not in names:
            raise ApiError(400, f"invalid request: {key}: unknown parameter")
        if len(request.args.getlist(key)) != 1:
            raise ApiError(400, f"invalid request: {key}: given more than once")
    missing = [name for name in names if name not in request.args]
    if missing:
        raise ApiError(400, f"invalid request: {missing[0]}: required")
    return {name: request.args[name] for name in names}


def _number(params: dict[str, str], name: str, least: int) -> int:
    value = params[name]
    if not (value.isascii() and value.isdigit()) or not least <= int(value) <= MAX_INT64:
        raise ApiError(400, f"invalid request: {name}: expected an integer of at least {least}")
    return int(value)
