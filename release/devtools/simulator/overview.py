"""The simulator's page at ``/``: every copy and its state, for people trying the demo."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from markupsafe import escape
from werkzeug.wrappers import Response

from release.devtools.simulator.store import SimItem


def overview_page(items: Iterable[SimItem]) -> Response:
    """A plain page listing every copy and its state (subjects and addresses escaped)."""
    rows = []
    for item in items:
        state = item.quarantine or ("held" if item.hold else item.state)
        cells = (
            item.transaction,
            str(item.queue),
            item.sender,
            item.recipient,
            item.subject,
            datetime.fromtimestamp(item.ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            state,
        )
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    heads = ("transaction", "queue", "sender", "recipient", "subject", "received", "state")
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Halon simulator</title>'
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style></head>"
        f"<body><h1>Halon simulator</h1><p>{len(rows)} copies</p><table><tr>"
        + "".join(f"<th>{h}</th>" for h in heads)
        + "</tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response
