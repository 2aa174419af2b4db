"""Reading an HTTP answer within one deadline and a size cap, for every gateway HTTP client
(Halon's API, Rspamd's controller): a peer that trickles or floods its answer gets an error,
not a worker thread. (requests' timeout bounds each read, not the whole; ``read1`` returns
whatever arrived, so the deadline is checked often.)"""

from __future__ import annotations

import time

import requests
import urllib3

CHUNK_SIZE = 64 * 1024


def read_bounded(response: requests.Response, deadline: float, limit: int) -> bytes:
    """The whole body of a ``stream=True`` response, by ``deadline`` (time.monotonic) and at
    most ``limit`` bytes; requests' own exceptions otherwise."""
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := response.raw.read1(CHUNK_SIZE):
            size += len(chunk)
            if size > limit:
                raise requests.RequestException(f"the answer is larger than {_amount(limit)}")
            if time.monotonic() > deadline:
                raise requests.Timeout("the answer did not finish in time")
            chunks.append(chunk)
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.Timeout(str(exc)) from None
    except urllib3.exceptions.HTTPError as exc:
        raise requests.RequestException(f"{type(exc).__name__}: {exc}") from None
    return b"".join(chunks)


def _amount(limit: int) -> str:
    """A cap as an operator reads it (a file read's cap is well under a MiB)."""
    return f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit} bytes"
