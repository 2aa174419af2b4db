"""The recipient's release page: GET and HEAD only show; POST (with CSRF) releases."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, url_for
from werkzeug.wrappers import Response as BaseResponse

from .flow import find_recipient_by_token
from .forms import ActionForm
from .models import Recipient, utcnow
from .presenters import release_status
from .services import services
from .web import db_session

bp = Blueprint("recipient", __name__)


def _recipient(token: str) -> Recipient:
    recipient = find_recipient_by_token(db_session(), token)
    if recipient is None:
        abort(404, description="This release link is not valid. Please use the link from the notification mail.")
    return recipient


def _status(recipient: Recipient) -> dict[str, object]:
    return release_status(recipient, expired_now=recipient.expires_at <= utcnow())


@bp.get("/release/<token>")
def show(token: str) -> str:
    """Who sent what, why the sender believes it is genuine, and a Release button."""
    recipient = _recipient(token)
    return render_template(
        "release.html", recipient=recipient, report=recipient.report, status=_status(recipient), form=ActionForm()
    )


@bp.post("/release/<token>")
def release(token: str) -> BaseResponse:
    """Queue the release; the page then shows releasing → released."""
    recipient = _recipient(token)
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, description="The form expired. Please reload the page and try again.")
    services().flow.request_release(db_session(), recipient)
    return redirect(url_for("recipient.show", token=token), code=303)


@bp.get("/release/<token>/status")
def status(token: str) -> Response:
    """Live status for the page's script."""
    response = jsonify(_status(_recipient(token)))
    response.headers["Cache-Control"] = "no-store"
    return response
