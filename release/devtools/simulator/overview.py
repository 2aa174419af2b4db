"""The simulator's page at ``/``: every copy and its state, and a form to hold a new message.

Everything shown is escaped (senders and subjects are a stranger's text) and the page runs no
script: its CSP allows none, and forms may post only back to the simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from markupsafe import Markup, escape
from werkzeug.wrappers import Response

from release.devtools.simulator.store import SimItem

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

FORM = (
    '<h2>Add a rejected message</h2><form method="post" action="/messages">'
    '<label>Sender <input name="sender" required maxlength="254" placeholder="someone@partner.example"></label> '
    '<label>Recipients <input name="recipients" required placeholder="alice@example.com, bob@example.com"></label> '
    '<label>Subject <input name="subject" maxlength="998"></label> '
    '<button type="submit">Hold it in the short quarantine</button></form>'
)


def overview_page(items: Iterable[SimItem], link_for: Callable[[str, int], str] | None = None) -> Response:
    """A plain page listing every copy and its state; ``link_for(transaction, received)`` adds report links."""
    rows = []
    for item in items:
        state = item.quarantine or ("held" if item.hold else item.state)
        cells = [
            escape(item.transaction),
            escape(str(item.queue)),
            escape(item.sender),
            escape(item.recipient),
            escape(item.subject),
            escape(datetime.fromtimestamp(item.ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
            escape(state),
        ]
        if link_for is not None:
            cells.append(_link(link_for(item.transaction, int(item.ts))) if item.queue == 1 else Markup(""))
        anchor = f' id="t-{escape(item.transaction)}"' if item.queue == 1 else ""
        rows.append(f"<tr{anchor}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    heads = ["transaction", "queue", "sender", "recipient", "subject", "received", "state"]
    if link_for is not None:
        heads.append("report link")
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Halon simulator</title>'
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
        "label{margin-right:8px}</style></head>"
        f"<body><h1>Halon simulator</h1>{FORM}<h2>Queue</h2><p>{len(rows)} copies</p><table><tr>"
        + "".join(f"<th>{h}</th>" for h in heads)
        + "</tr>"
        + "".join(rows)
        + "</table></body></html>"
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    return response


def _link(target: str) -> Markup:
    """A report URL as a link; anything else (the sign-link command) as code."""
    if target.startswith(("https://", "http://")):
        return Markup('<a href="{0}">{0}</a>').format(target)
    return Markup("<code>{0}</code>").format(target)
