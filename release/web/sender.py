"""The sender's pages: the signed report link, the report form, and live status."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response as BaseResponse

from release.container import services
from release.core import links
from release.core.reports import Submission
from release.web.database import db_session
from release.web.forms import ReportForm
from release.web.headers import allow_captcha
from release.web.limits import challenge_limit, report_limits
from release.web.presenters import RETRY_SHOWN_STATES, report_status

bp = Blueprint("sender", __name__)


def _verified_link() -> tuple[links.ReportLink, str]:
    """Verify the link in the query string; LinkError is turned into a page by errors.py.

    Also returns the link's query rebuilt from the verified fields: the pages build their
    URLs from it, never from the query as it came (extra parameters go nowhere).
    """
    svc = services()
    link = links.verify(
        request.args,
        keys=svc.settings.links.keys,
        nodes=svc.gateways.keys(),
        # Read from the database only for a genuinely signed link.
        max_age_seconds=lambda: int(svc.ctx.retention(db_session).short.total_seconds()),
        now=time.time(),
        clock_skew_seconds=svc.settings.links.clock_skew_seconds,
    )
    return link, urlencode(link.query(request.args["s"]))


def _status(link: links.ReportLink) -> dict[str, Any] | None:
    report = services().summaries.find(link.node, link.message_id)
    if report is None:
        return None
    # Only these states say "we keep trying", and only once an attempt has failed.
    retrying = report.state in RETRY_SHOWN_STATES and (report.locate_attempts or 0) > 1
    return report_status(report, still_retrying=retrying)


@bp.route("/report", methods=["GET", "POST"])
@report_limits
def report() -> str | BaseResponse | tuple[str, int]:
    """Show the form (or the status, once reported); POST stores the report."""
    link, query = _verified_link()
    status = _status(link)
    if status is not None:
        return render_template("report_status.html", status=status, link=link, link_query=query)
    allow_captcha()
    svc = services()
    max_comment = svc.settings.app.max_comment_length
    form = ReportForm()
    form.limit_comment(max_comment)
    captcha_error = None
    if form.validate_on_submit():
        # The solution is recorded in a transaction of its own, seen by every process at once;
        # SQLite has one writer, so this request's (the link check's read) must end first.
        db_session().commit()
        if svc.captcha.verify(request.form.get(svc.captcha.field_name), request.remote_addr).ok:
            comment = (form.comment.data or "").strip()
            submission = Submission(link=link, comment=comment, sender_ip=request.remote_addr or "")
            svc.steps.reports.submit(db_session(), submission)
            return redirect(f"{url_for('sender.report')}?{query}", code=303)
        captcha_error = gettext("The anti-robot check did not pass. Please try it again.")
    page = render_template(
        "report_form.html", link=link, link_query=query, form=form, captcha=svc.captcha, captcha_error=captcha_error,
        challenge_url=url_for("sender.altcha_challenge"), short_hours=svc.ctx.retention(db_session).short_hours,
        config_max_comment=max_comment,
    )  # fmt: skip
    return (page, 400) if request.method == "POST" else page


@bp.get("/report/status")
def report_status_json() -> Response:
    """Live status for the page's script (same link parameters, same checks)."""
    status = _status(_verified_link()[0])
    if status is None:
        abort(404)
    response = jsonify(status)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/captcha/altcha-challenge")
@challenge_limit
def altcha_challenge() -> Response:
    """A fresh proof-of-work challenge for the ALTCHA widget."""
    captcha = services().captcha
    if not hasattr(captcha, "challenge"):
        abort(404)
    response = jsonify(captcha.challenge())
    response.headers["Cache-Control"] = "no-store"
    return response
