"""The recipient's preview, through the real processes: `gunicorn app:app` with two rspamd
nodes (previews on for one, off for the other), on SQLite and PostgreSQL.

For each message size (100 kB: text, HTML and a PDF; about 2 MB: the same with a large HTML
part and a large attachment, just under the default cap, so the whole message is parsed and
sanitised), the same messages are pushed to both nodes and given release links. "Preview
shown" is timed as a browser gets it: GET the release page, then GET the sandboxed frame's
address the page names, one after the other. The same run times the release page of the node
without previews (what the preview adds) and GET /healthz (the floor), so the ratios stand
on a noisy machine.

    .venv/bin/python bench/preview.py [--views 200] [--only sqlite,postgres]
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import (  # noqa: E402
    RSPAMD_PUSH_PASSWORD,
    SECRET_KEY,
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

from release.core import links  # noqa: E402
from release.db.engine import Database  # noqa: E402
from release.db.models import Recipient, Report, StoredCopy, StoredMessage  # noqa: E402

NODES = {"mx3": True, "mx4": False}  # node name: previews on
RECIPIENT = "alice@example.com"
FRAME = re.compile(r'<iframe class="preview-frame" src="([^"]+)"')
BAR_MS = 200.0
SIZES = {"100 kB": 100_000, "2 MB": 1_990_000}


def message(size: int) -> bytes:
    """A distinct message of about ``size`` bytes: text, HTML with links and images, a PDF."""
    tag = uuid.uuid4().hex
    text = "Dear customer, please find the invoice for your order attached.\r\n" * 20
    row = (
        '<tr><td style="padding:4px;color:#333">Item</td><td><a href="https://shop.partner.example/i/{n}">'
        'shop.partner.example</a></td><td><img src="https://partner.example/p/{n}.png" alt="product"></td></tr>'
    )
    html_budget = max(20_000, size // 4)
    rows = "".join(row.format(n=n) for n in range(html_budget // len(row)))
    html = f"<html><body><p>Dear customer,</p><table>{rows}</table><p>Anna</p></body></html>"
    html_b64 = base64.encodebytes(html.encode()).decode().replace("\n", "\r\n")
    pdf_bytes = max(0, (size - len(html_b64) - len(text) - 2000) * 3 // 4 * 76 // 78)  # base64 lines, CRLF
    pdf = base64.encodebytes(b"%PDF-1.4\n" + os.urandom(pdf_bytes)).decode().replace("\n", "\r\n")
    return (
        f"From: Anna <anna@partner.example>\r\nTo: {RECIPIENT}\r\nSubject: Invoice {tag}\r\n"
        f"Date: Sat, 05 Dec 2026 09:30:00 +0000\r\nMessage-ID: <{tag}@partner.example>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="m{tag}"\r\n\r\n'
        f'--m{tag}\r\nContent-Type: multipart/alternative; boundary="a{tag}"\r\n\r\n'
        f"--a{tag}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--a{tag}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{html_b64}\r\n--a{tag}--\r\n"
        f'--m{tag}\r\nContent-Type: application/pdf; name="invoice.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        f"{pdf}\r\n--m{tag}--\r\n"
    ).encode()


def push(url: str, node: str, body: bytes) -> None:
    headers = push_headers([RECIPIENT], [("R_SPF_ALLOW", -0.2)])
    answer = requests.post(
        f"{url}/gateway/v1/rspamd/{node}", data=body, headers=headers, auth=(node, RSPAMD_PUSH_PASSWORD), timeout=60
    )
    answer.raise_for_status()


def release_links(database_url: str, node: str) -> list[str]:
    """A notified report with a release link for every message ``node`` holds that has none
    yet (as the worker leaves them), in the order they were pushed: their tokens."""
    db = Database(database_url)
    now = datetime.now(UTC)
    tokens = []
    try:
        with db.session() as session:
            reported = select(Report.id).where(Report.node == node, Report.message_id == StoredMessage.message_id)
            held = session.execute(
                select(StoredMessage.message_id, StoredCopy.id)
                .join(StoredCopy)
                .where(StoredMessage.node == node, ~reported.exists())
                .order_by(StoredMessage.id)
            ).all()
            for message_id, copy_id in held:
                report = Report(
                    node=node,
                    message_id=message_id,
                    link_issued_at=now,
                    state="notified",
                    comment="We are your supplier.",
                    sender_ip="192.0.2.1",
                    envelope_sender="anna@partner.example",
                    subject="Invoice",
                )
                nonce = links.new_token_nonce()
                token = links.release_token(SECRET_KEY, nonce)
                report.recipients.append(
                    Recipient(
                        queue=copy_id,
                        address=RECIPIENT,
                        state="notified",
                        token_nonce=nonce,
                        token_hash=links.token_hash(token),
                        expires_at=now + timedelta(days=7),
                        notified_at=now,
                    )
                )
                session.add(report)
                tokens.append(token)
            session.commit()
    finally:
        db.dispose()
    return tokens


def view(http: requests.Session, public: str, token: str, *, frame: bool) -> float:
    """Open the release page and, where it embeds one, its preview frame: seconds taken."""
    started = time.perf_counter()
    page = http.get(f"{public}/release/{token}", timeout=30)
    page.raise_for_status()
    found = FRAME.search(page.text)
    if frame:
        if found is None:
            raise RuntimeError("the release page embeds no preview frame")
        http.get(public + found.group(1).replace("&amp;", "&"), timeout=30).raise_for_status()
    elif found is not None:
        raise RuntimeError("a node without previews embedded a frame")
    return time.perf_counter() - started


def timed(public: str, tokens: list[str], *, frame: bool) -> list[float]:
    with requests.Session() as http:
        return [view(http, public, token, frame=frame) for token in tokens]


def _cols(figures: dict[str, float]) -> tuple[float, float, float]:
    return figures["p50"], figures["p95"], figures["p99"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=200)
    parser.add_argument("--only", default="sqlite,postgres")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    header(f"release page to preview shown: {args.views} views each of 100 kB and 2 MB messages")
    rows = []
    with workdir(args.keep) as work, gear(0.0) as g:
        for kind in args.only.split(","):
            with database(kind, work) as url:
                port = free_port()
                public = f"http://127.0.0.1:{port}"
                config = write_config(work / f"{kind}.toml", url, public, g)
                with config.open("a") as fh:
                    for node, on in NODES.items():
                        fh.write(rspamd_node_toml(node, g.mailbox.port, preview=on))
                with stack(config, work) as s:
                    s.gunicorn(port, workers=2, threads=4)
                    floor = summary_ms(timed_gets(f"{public}/healthz", args.views))
                    rows.append((kind, "GET /healthz (floor)", "", *_cols(floor), "", ""))
                    for label, size in SIZES.items():
                        views = 10 if size > 1_000_000 else args.views  # a 2 MB message: few are enough
                        bodies = [message(size) for _ in range(views + 5)]
                        for node in NODES:
                            for body in bodies:
                                push(public, node, body)
                        on, off = (release_links(url, node)[-len(bodies) :] for node in NODES)
                        timed(public, on[:5], frame=True)  # warm both workers up
                        shown = summary_ms(timed(public, on[5:], frame=True))
                        plain = summary_ms(timed(public, off[5:], frame=False))
                        verdict = ("yes" if shown["p95"] < BAR_MS else "NO") if size < 1_000_000 else ""
                        rows += [
                            (
                                kind,
                                f"release page, previews off ({label})",
                                len(bodies[0]),
                                *_cols(plain),
                                f"{plain['p50'] / floor['p50']:.1f}",
                                "",
                            ),
                            (
                                kind,
                                f"page + frame: preview shown ({label})",
                                len(bodies[0]),
                                *_cols(shown),
                                f"{shown['p50'] / floor['p50']:.1f}",
                                verdict,
                            ),
                        ]
    say(table(["db", "request", "bytes", "p50 ms", "p95 ms", "p99 ms", "x floor p50", f"p95 < {BAR_MS:g} ms"], rows))


if __name__ == "__main__":
    main()
