"""The recipient's release page: GET and HEAD only show; POST (with CSRF) releases, asks the
admins to, deletes, or releases and always allows the sender (the ``choice`` button)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response as BaseResponse

from release.container import services
from release.core.choices import needs_approval
from release.core.release import find_recipient_by_token
from release.db.models import Recipient, utcnow
from release.web import preview
from release.web.database import db_session
from release.web.forms import ActionForm
from release.web.presenters import release_status

bp = Blueprint("recipient", __name__)
CHOICES = ("release", "allow", "delete")


def _recipient(token: str) -> Recipient:
    recipient = find_recipient_by_token(db_session(), token)
    if recipient is None:
        message = gettext("This release link is not valid. Please use the link from the notification mail.")
        abort(404, description=message)
    return recipient


def _status(recipient: Recipient) -> dict[str, object]:
    held = needs_approval(services().settings.policy, recipient) is not None
    return release_status(recipient, expired_now=recipient.expires_at <= utcnow(), needs_approval=held)


@bp.get("/release/<token>")
def show(token: str) -> str:
    """Who sent what (a safe preview), why the sender believes it is genuine, and a Release
    button."""
    recipient = _recipient(token)
    status = _status(recipient)
    return render_template(
        "release.html",
        recipient=recipient,
        report=recipient.report,
        status=status,
        form=ActionForm(),
        **preview.context(recipient),
    )


@bp.post("/release/<token>")
def release(token: str) -> BaseResponse:
    """Queue the release (or the approval request, or the deletion); the page then shows it."""
    recipient = _recipient(token)
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, description=gettext("The form expired. Please reload the page and try again."))
    choice = request.form.get("choice", "release")
    if choice not in CHOICES:
        abort(400, description=gettext("Unknown choice. Please use the buttons on the page."))
    choices = services().steps.choices
    if choice == "delete":
        choices.delete(db_session(), recipient)
    else:
        choices.release(db_session(), recipient, always_allow=choice == "allow")
    return redirect(url_for("recipient.show", token=token), code=303)


@bp.get("/release/<token>/status")
def status(token: str) -> Response:
    """Live status for the page's script."""
    response = jsonify(_status(_recipient(token)))
    response.headers["Cache-Control"] = "no-store"
    return response
