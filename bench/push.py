"""Rspamd's push of a rejected message, through the real processes: `gunicorn app:app` with an
rspamd node configured, on SQLite and PostgreSQL.

For each database: N sequential pushes of distinct 100 kB messages (text and a base64
attachment, as spam with a PDF looks), then of 2 kB messages, over one keep-alive HTTP
connection as Rspamd's HTTP client keeps one per worker; then 8 pushers at once. Each push
is timed from the request to the 200 (stored and committed). The same run times GET
/healthz (the floor of a request to these processes) so the ratio stands on a noisy machine.

    .venv/bin/python bench/push.py [--pushes 300] [--only sqlite,postgres]
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import (  # noqa: E402
    RSPAMD_PUSH_PASSWORD,
    database,
    free_port,
    gear,
    header,
    push_headers,
    rspamd_node_toml,
    say,
    stack,
    summary_ms,
    table,
    timed_gets,
    workdir,
    write_config,
)

NODE = "mx3"
BAR_MS = 50.0


def message(size: int) -> bytes:
    """A distinct message of about ``size`` bytes: headers, a text part, a base64 attachment."""
    tag = uuid.uuid4().hex
    text = ("Dear customer, please find the invoice for your order attached. " * 20 + "\r\n") * 2
    attachment = base64.encodebytes(os.urandom(max(0, (size - 2000) * 3 // 4))).decode().replace("\n", "\r\n")
    return (
        f"Received: from mail.partner.example (mail.partner.example [198.51.100.7])\r\n"
        f"\tby mx3.example.com (Postfix) with ESMTPS id {tag[:12].upper()}\r\n"
        f"From: Anna <anna@partner.example>\r\nTo: alice@example.com\r\nSubject: Invoice {tag}\r\n"
        f"Message-ID: <{tag}@partner.example>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="b{tag}"\r\n\r\n'
        f"--b{tag}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f'--b{tag}\r\nContent-Type: application/pdf; name="invoice.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{attachment}\r\n--b{tag}--\r\n"
    ).encode()


HEADERS = push_headers(["alice@example.com", "bob@example.com"], [("GTUBE", 0.0)])


def timed_pushes(url: str, bodies: list[bytes]) -> list[float]:
    times = []
    with requests.Session() as http:
        http.auth = (NODE, RSPAMD_PUSH_PASSWORD)
        for body in bodies:
            started = time.perf_counter()
            response = http.post(url, data=body, headers=HEADERS, timeout=30)
            times.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"push answered {response.status_code}: {response.text[:300]}")
    return times


def concurrent(url: str, bodies: list[bytes], threads: int) -> tuple[list[float], float]:
    chunks = [bodies[i::threads] for i in range(threads)]
    results: list[list[float]] = [[] for _ in range(threads)]
    workers = [
        threading.Thread(target=lambda i=i: results[i].extend(timed_pushes(url, chunks[i]))) for i in range(threads)
    ]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return [t for r in results for t in r], time.perf_counter() - started


def _cols(figures: dict[str, float]) -> tuple[float, float, float]:
    return figures["p50"], figures["p95"], figures["p99"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=300)
    parser.add_argument("--only", default="sqlite,postgres")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    header(f"push of rejected messages: {args.pushes} sequential 100 kB and 2 kB, then 8 at once")
    big = [message(100_000) for _ in range(args.pushes)]
    ratio = len(zlib.compress(big[0], 6)) / len(big[0])
    started = time.perf_counter()
    for body in big[:50]:
        zlib.compress(body, 6)
    say(f"   100 kB message: {len(big[0])} bytes, compressed to {ratio:.0%}; zlib level 6 "
        f"{(time.perf_counter() - started) / 50 * 1000:.2f} ms each in this process")  # fmt: skip
    rows = []
    with workdir(args.keep) as work, gear(0.0) as g:
        relay = g.mailbox
        for kind in args.only.split(","):
            with database(kind, work) as url:
                port = free_port()
                public = f"http://127.0.0.1:{port}"
                config = write_config(work / f"{kind}.toml", url, public, g)
                with config.open("a") as fh:
                    fh.write(rspamd_node_toml(NODE, relay.port))
                with stack(config, work) as s:
                    s.gunicorn(port, workers=2, threads=4)
                    push_url = f"{public}/gateway/v1/rspamd/{NODE}"
                    timed_gets(f"{public}/healthz", 50)  # warm up both workers' pools
                    timed_pushes(push_url, [message(100_000) for _ in range(20)])
                    floor = summary_ms(timed_gets(f"{public}/healthz", args.pushes))
                    large = summary_ms(timed_pushes(push_url, big))
                    small = summary_ms(timed_pushes(push_url, [message(2000) for _ in range(args.pushes)]))
                    together, wall = concurrent(push_url, [message(100_000) for _ in range(args.pushes)], 8)
                    parallel = summary_ms(together)
                    verdict = "yes" if large["p95"] < BAR_MS else "NO"
                    rows += [
                        (kind, "GET /healthz (floor)", *_cols(floor), "", ""),
                        (kind, "push 2 kB", *_cols(small), f"{small['p50'] / floor['p50']:.1f}", ""),
                        (kind, "push 100 kB", *_cols(large), f"{large['p50'] / floor['p50']:.1f}", verdict),
                        (kind, "push 100 kB, 8 at once", *_cols(parallel), "", f"{len(together) / wall:.0f}/s"),
                    ]
    say(table(["db", "request", "p50 ms", "p95 ms", "p99 ms", "x floor p50", f"p95 < {BAR_MS:g} ms / rate"], rows))


if __name__ == "__main__":
    main()
