"""The sender's pages: the signed report link, the report form, and live status."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_babel import gettext
from werkzeug.wrappers import Response as BaseResponse

from release.container import services
from release.core import links
from release.core.reports import Submission
from release.web.csrf import CsrfTokens
from release.web.database import db_session, format_datetime
from release.web.forms import ReportForm
from release.web.headers import allow_captcha
from release.web.i18n import current_locale, language_prefix
from release.web.limits import challenge_limit, report_limits
from release.web.prerender import Prerendered
from release.web.presenters import RETRY_SHOWN_STATES, report_status

bp = Blueprint("sender", __name__)


@dataclass(frozen=True)
class FormVisit:
    """What differs between two visitors' view of the report form (the rest is prerendered)."""

    action: str
    csrf_token: str
    node: str
    issued: str
    message_id: str
    language_prefix: str


FORM_PAGE, CSRF_TOKENS = "release.report_form_page", "release.csrf_tokens"  # app.extensions keys


@bp.record_once
def _per_app(state: BlueprintSetupState) -> None:
    # Per app, not per process: the page carries the app's branding and template folder.
    app = state.app
    app.extensions[FORM_PAGE] = Prerendered("report_form.html", FormVisit)
    app.extensions[CSRF_TOKENS] = CsrfTokens(app.config.get("WTF_CSRF_SECRET_KEY") or app.secret_key)


def _verified_link() -> links.ReportLink:
    """Verify the link in the query string; LinkError is turned into a page by errors.py."""
    svc = services()
    return links.verify(
        request.args,
        keys=svc.settings.links.keys,
        nodes=svc.gateways.keys(),
        # Read from the database only for a genuinely signed link.
        max_age_seconds=lambda: int(svc.ctx.retention(db_session).short.total_seconds()),
        now=time.time(),
        clock_skew_seconds=svc.settings.links.clock_skew_seconds,
    )


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
    link = _verified_link()
    status = _status(link)
    if status is not None:
        return render_template("report_status.html", status=status, link=link)
    svc = services()
    short_hours = svc.ctx.retention(db_session).short_hours
    visit = FormVisit(
        action=request.full_path, csrf_token=current_app.extensions[CSRF_TOKENS].token(), node=link.node,
        issued=format_datetime(link.issued_at), message_id=link.message_id, language_prefix=language_prefix(),
    )  # fmt: skip
    allow_captcha()
    max_comment = svc.settings.app.max_comment_length
    context = {"captcha": svc.captcha, "short_hours": short_hours, "config_max_comment": max_comment}
    if request.method != "POST":
        # The first view: the same for everyone with this language and retention.
        def first_view() -> dict[str, Any]:
            form = _new_form(max_comment)
            return {"form": form, "captcha_error": None, "challenge_url": url_for("sender.altcha_challenge"), **context}

        return current_app.extensions[FORM_PAGE].render((current_locale(), short_hours), visit, first_view)
    form = _new_form(max_comment)
    if form.validate_on_submit():
        result = svc.captcha.verify(request.form.get(svc.captcha.field_name), request.remote_addr)
        if result.ok:
            submission = Submission(
                link=link, comment=(form.comment.data or "").strip(), sender_ip=request.remote_addr or ""
            )
            svc.steps.reports.submit(db_session(), submission)
            return redirect(request.full_path, code=303)
        captcha_error = gettext("The anti-robot check did not pass. Please try it again.")
    else:
        captcha_error = None
    challenge_url = url_for("sender.altcha_challenge")
    page = render_template(
        "report_form.html", visit=visit, form=form, captcha_error=captcha_error, challenge_url=challenge_url, **context
    )
    return page, 400


def _new_form(max_comment_length: int) -> ReportForm:
    form = ReportForm()
    form.limit_comment(max_comment_length)
    return form


@bp.get("/report/status")
def report_status_json() -> Response:
    """Live status for the page's script (same link parameters, same checks)."""
    status = _status(_verified_link())
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
