"""Reading a held message's bytes from a Halon 5.x node, the way Halon's own web-logui does.

Facts, from halon/web-logui (the 5.3+ end-user UI; read at commit d2b990f):

- ``pages/preview.php``: the copy is listed with F by ``{transaction, queue}``; the single
  item's ``hqfpath`` locates the message on the node.
- ``inc/eml.php`` (``eml_download``): the message as received is the file named like the
  ``.hqf`` with its last three characters replaced by ``eml``.
- ``inc/eml.php`` (``readUntil``): ``GET /api/5.3.0/system/files`` with the query parameters
  ``path``, ``offset`` and ``limit``; the answer's ``data`` is base64, its ``size`` the number
  of bytes in this answer (a size below the ``limit`` asked ends the read), its ``offset``
  where the next read starts.
- ``inc/eml.php``: ``POST /api/5.3.0/system/files:size`` with the query parameter ``path``
  answers ``{"size": N}``, the whole file (web-logui's Content-Length for a download).
- ``classes/ARestClient.class.php``: these paths sit under ``/api/5.3.0`` with HTTP Basic.
- ``pages/preview.php`` refuses previews of messages over 1 MiB; ``inc/eml.php`` asks for
  10 MiB per read. We ask for at most 1 MiB per read, and never more than the caller's limit.

Not followed: web-logui's default view also applies the per-recipient changes recorded in the
``.hqf`` (its "modified" message); we read the ``.eml`` as received, its "original" view.

Every answer is stranger data: a path that could steer the read elsewhere, or a chunk that is
not exactly what was asked, is an error, never content.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from release.gateway.base import ContentUnavailable, GatewayError, MessageContent
from release.gateway.halon_items import Marking, as_int, read_items
from release.gateway.halon_transport import CONTROL_CHARS, HalonTransport

FILES_PATH = "/api/5.3.0/system/files"
FILES_SIZE_PATH = "/api/5.3.0/system/files:size"
READ_LIMIT = 2**20  # bytes asked for per read
PATH_LIMIT = 1024


def eml_path(answer: Mapping[str, Any], marking: Marking, transaction: str, queue: int, what: str) -> str | None:
    """The ``.eml`` path of the copy (transaction, queue) in a list (F) answer; None when the
    answer does not hold it (gone)."""
    items = answer.get("items", [])
    copies = read_items(answer, marking, what)  # checks every item first
    mine = [items[i] for i, c in enumerate(copies) if (c.transaction, c.queue) == (transaction, queue)]
    if not mine:
        return None
    if len(mine) > 1:
        raise GatewayError(f"{what}: the list answered {len(mine)} items for one copy")
    hqfpath = mine[0].get("hqfpath")
    if hqfpath in (None, ""):  # proto3 leaves out an empty string
        raise ContentUnavailable(f"{what}: the list item has no 'hqfpath' (this node does not say where it is)")
    if not _plausible_hqf(hqfpath):
        shown = CONTROL_CHARS.sub(" ", str(hqfpath))[:80]
        raise GatewayError(f"{what}: refusing 'hqfpath' {shown!r}: not an absolute path to a .hqf file")
    return hqfpath[: -len("hqf")] + "eml"


def _plausible_hqf(value: Any) -> bool:
    """An absolute ``.hqf`` path with no way up and nothing that is not plain text."""
    return (
        isinstance(value, str)
        and len(value) <= PATH_LIMIT
        and value.startswith("/")
        and value.endswith(".hqf")
        and ".." not in value
        and "\\" not in value
        and CONTROL_CHARS.search(value) is None
    )


def read_eml(api: HalonTransport, path: str, limit: int, what: str) -> MessageContent | None:
    """The first ``limit`` bytes of the file and its whole size, in reads of at most
    :data:`READ_LIMIT`; None when the node answers that the file is not there."""
    data = bytearray()
    while len(data) < limit:
        asked = min(READ_LIMIT, limit - len(data))
        answer = api.get_json(FILES_PATH, {"path": path, "offset": len(data), "limit": asked}, _answer_cap(asked))
        if answer is None:
            return None
        chunk = read_chunk(answer, len(data), asked, what)
        data += chunk
        if len(chunk) < asked:  # the end of the file (web-logui's own test)
            return MessageContent(bytes(data), len(data))
    answer = api.post_query(FILES_SIZE_PATH, {"path": path})
    if answer is None:
        return None
    size = as_int(answer.get("size"), -1)
    if size < len(data):
        raise GatewayError(f"{what}: files:size answered {answer.get('size')!r:.40} after {len(data)} bytes were read")
    return MessageContent(bytes(data), size)


def read_chunk(answer: Mapping[str, Any], offset: int, asked: int, what: str) -> bytes:
    """The bytes of one file read, checked against what was asked: base64 ``data``, ``size``
    its exact length and no more than ``asked``, ``offset`` the position after it."""
    encoded = answer.get("data")
    if not isinstance(encoded, str):
        raise GatewayError(f"{what}: the file read has no 'data' string")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise GatewayError(f"{what}: the file read's 'data' is not base64") from None
    size = as_int(answer.get("size"), -1)
    if size < 0:
        raise GatewayError(f"{what}: the file read's 'size' is not a non-negative integer")
    if size != len(data) or size > asked:
        raise GatewayError(f"{what}: asked for {asked} bytes, got {len(data)} with 'size' {size}")
    if as_int(answer.get("offset"), -1) != offset + size:
        raise GatewayError(
            f"{what}: read at {offset}, the answer's 'offset' is {answer.get('offset')!r:.40}, not {offset + size} "
            "(where the next read starts, as web-logui reads it)"
        )
    return data


def _answer_cap(asked: int) -> int:
    """The most a read's JSON answer may take: base64 of ``asked`` bytes, each character
    possibly escaped (PHP writes "/" as "\\/"), and room for the other fields."""
    return 2 * 4 * (asked // 3 + 1) + 4096
