"""``POST /messages``: the overview page's form to hold a new rejected message, without JavaScript.

A local tool still gets a hostile browser's visit: a page on another site could post to it.
So a cross-site post is refused (``Origin`` or ``Sec-Fetch-Site`` says so), every field is
bounded and free of control characters, and what is stored is only ever shown escaped.
"""

from __future__ import annotations

import unicodedata

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from release.devtools.simulator.store import SimQueue

MAX_ADDRESS = 254
MAX_SUBJECT = 998  # RFC 5322's line limit
MAX_RECIPIENTS = 20
MAX_BODY = 64 * 1024


class FormError(ValueError):
    """A field the form refuses; the message names it in plain words."""


def add_from_form(sim: SimQueue, request: Request) -> Response:
    """Hold the posted message and go back to ``/`` (303), or say what was wrong (400/403)."""
    if _cross_site(request):
        return _plain("refused: the form was posted from another site", 403)
    request.max_content_length = MAX_BODY
    try:
        request.form  # noqa: B018 - parse now, within the limit
    except RequestEntityTooLarge:
        return _plain(f"not added: the form is larger than {MAX_BODY} bytes", 413)
    try:
        sender = _field(request, "sender", MAX_ADDRESS, required=True)
        raw = _field(request, "recipients", MAX_ADDRESS * MAX_RECIPIENTS, required=True)
        subject = _field(request, "subject", MAX_SUBJECT, required=False)
        recipients = [r for r in raw.replace(";", ",").replace(" ", ",").split(",") if r]
        if not recipients or len(recipients) > MAX_RECIPIENTS:
            raise FormError(f"give 1 to {MAX_RECIPIENTS} recipients, separated by commas")
        if any(len(r) > MAX_ADDRESS for r in recipients):
            raise FormError(f"a recipient address is longer than {MAX_ADDRESS} characters")
    except FormError as exc:
        return _plain(f"not added: {exc}", 400)
    transaction = sim.add_message(sender, recipients, subject)
    response = Response(status=303)
    response.headers["Location"] = f"/#t-{transaction}"
    return response


def _field(request: Request, name: str, limit: int, *, required: bool) -> str:
    value = request.form.get(name, "").strip()
    if required and not value:
        raise FormError(f"{name} is required")
    if len(value) > limit:
        raise FormError(f"{name} is longer than {limit} characters")
    if any(unicodedata.category(c)[0] == "C" for c in value):
        raise FormError(f"{name} holds control or format characters")
    return value


def _cross_site(request: Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return True
    return request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none")


def _plain(text: str, status: int) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")
