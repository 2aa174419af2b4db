"""The admin console (/admin): thin views over admin_actions, auth and enforcement."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response as BaseResponse
from wtforms import BooleanField, IntegerField, PasswordField, StringField
from wtforms.validators import DataRequired, InputRequired, Length

from release.container import services
from release.core import admin_actions, history, retention, stats
from release.core.admin_actions import ActionRefused, ReportFilter
from release.db.models import AdminUser, Recipient
from release.db.states import AdminRole, JobState, RecipientState, ReportState
from release.gateway import stored
from release.web import converters, preview
from release.web.admin import auth, charts
from release.web.database import db_session
from release.web.limits import client_ip, login_limit, too_many

bp = Blueprint("admin", __name__, url_prefix="/admin")
ACTIONS = {
    "release": (admin_actions.release_copy, "Release of the copy queued."),
    "resend": (admin_actions.resend_notification, "The notification will be sent again."),
    "delete": (admin_actions.delete_copy, "The copy will be deleted from the gateway."),
}
SIGN_IN_THROTTLED = "Too many failed sign-ins for this user name."


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=128)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=auth.MAX_PASSWORD_LENGTH)])


class PostForm(FlaskForm):
    """Just the CSRF token (sign-out)."""


class ConfirmForm(FlaskForm):
    confirm = BooleanField("I confirm", validators=[DataRequired(message="Tick the box to confirm this action.")])


class DecisionForm(FlaskForm):
    reason = StringField("Reason", validators=[DataRequired(message="Give a reason for the recipient."),
                                               Length(max=500)])  # fmt: skip


class RetentionForm(FlaskForm):
    short_hours = IntegerField("Short retention (hours)", validators=[InputRequired()])
    long_days = IntegerField("Long retention (days)", validators=[InputRequired()])
    record_days = IntegerField("Record retention (days)", validators=[InputRequired()])


def _admin() -> AdminUser:
    user = auth.current_admin()
    assert user is not None  # login_required ran first
    return user


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def _layout() -> dict[str, object]:
    # formdata=None: the layout's form never reads the request body (while a 413 page is
    # rendered, reading it again would raise once more).
    return {"admin_user": auth.current_admin(), "logout_form": PostForm(formdata=None)}


@bp.route("/login", methods=["GET", "POST"])
@login_limit
def login() -> str | BaseResponse | tuple[str, int]:
    """Sign in with a local account."""
    if auth.current_admin() is not None:
        return redirect(auth.safe_next(request.args.get("next")))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        try:
            user = auth.check_sign_in(db_session(), form.username.data or "", form.password.data or "", client_ip())
        except auth.SignInThrottled as exc:
            return too_many(SIGN_IN_THROTTLED, exc.retry_after)
        if user is not None:
            auth.sign_in(db_session(), user)
            return redirect(auth.safe_next(request.args.get("next")), code=303)
        error = "Unknown user name or wrong password."
    status = 401 if error else 400 if request.method == "POST" else 200
    return render_template("admin/login.html", form=form, error=error), status


@bp.post("/logout")
@auth.login_required()
def logout() -> BaseResponse:
    """Sign out (POST only, with CSRF); ends every session of this account."""
    auth.sign_out(db_session(), _admin())
    return redirect(url_for("admin.login"), code=303)


@bp.get("/")
@auth.login_required()
def index() -> BaseResponse:
    """The console starts at the reports list."""
    return redirect(url_for("admin.reports"))


@bp.get("/reports")
@auth.login_required()
def reports() -> str:
    """Search reports by sender, recipient, subject, message id, node, status, dates."""
    flt = ReportFilter.from_args(request.args)
    page = admin_actions.search_reports(db_session(), flt, request.args.get("page", 1, type=int) or 1)
    nodes = [n.name for n in services().settings.nodes]
    return render_template("admin/reports.html", page=page, flt=flt, states=list(ReportState), nodes=nodes)


@bp.get("/reports/<id:report_id>")
@auth.login_required()
def report(report_id: int) -> str:
    """One report: its copies, their history, its jobs, and the actions."""
    detail = admin_actions.report_detail(db_session(), report_id, services().job_types)
    if detail is None:
        abort(404)
    return render_template(
        "admin/report.html",
        d=detail,
        form=ConfirmForm(),
        now=admin_actions.utcnow(),
        job_types=services().job_types,
        actionable=admin_actions.ACTIONABLE_STATES,
        RecipientState=RecipientState,
        JobState=JobState,
    )


@bp.post("/recipients/<id:recipient_id>/<action>")
@auth.login_required(AdminRole.ADMIN)
def act_on_copy(recipient_id: int, action: str) -> BaseResponse:
    """Release, resend or delete one copy, after a ticked confirmation."""
    if action not in ACTIONS:
        abort(404)
    do, done = ACTIONS[action]
    report_id = _act(lambda: do(db_session(), recipient_id, _admin().username).report_id, done)
    return redirect(url_for("admin.report", report_id=report_id) if report_id else url_for("admin.reports"), code=303)


@bp.get("/recipients/<id:recipient_id>/preview")
@auth.login_required(AdminRole.ADMIN)
def preview_copy(recipient_id: int) -> str:
    """What the recipient sees of the held message; every view is in the audit log (mail
    content is the recipient's, and viewers never see it)."""
    session = db_session()
    recipient = session.get(Recipient, recipient_id)
    if recipient is None:
        abort(404)
    history.audit(session, _admin().username, "preview.viewed", f"recipient:{recipient.id}",
                  f"{recipient.report.node}/{recipient.report.message_id}#{recipient.queue}")  # fmt: skip
    session.commit()
    return render_template("admin/preview.html", recipient=recipient, report=recipient.report,
                           **preview.context(recipient))  # fmt: skip


@bp.post("/jobs/<id:job_id>/retry")
@auth.login_required(AdminRole.ADMIN)
def retry_job(job_id: int) -> BaseResponse:
    """Give a dead job new attempts."""
    _act(
        lambda: admin_actions.retry_job(db_session(), job_id, _admin().username, services().job_types).id,
        "The job will run again.",
    )
    return redirect(auth.safe_next(request.form.get("back")), code=303)


def _act(action: Callable[[], int], done: str) -> int | None:
    """Run an action after the confirmation; flash the outcome."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash("Tick the confirmation box to do this.", "danger")
        return converters.parse_id(request.form.get("report_id"))
    try:
        result = action()
    except ActionRefused as exc:
        db_session().rollback()
        flash(str(exc), "warning")
        return converters.parse_id(request.form.get("report_id"))
    flash(done, "success")
    return result


@bp.get("/approvals")
@auth.login_required()
def approvals() -> str:
    """Releases the policy held back, waiting for an admin's approval."""
    rows = admin_actions.pending_approvals(db_session())
    return render_template("admin/approvals.html", rows=rows, form=DecisionForm())


@bp.post("/approvals/<id:recipient_id>/<decision>")
@auth.login_required(AdminRole.ADMIN)
def decide(recipient_id: int, decision: str) -> BaseResponse:
    """Approve or deny one held-back release, with a reason the recipient is mailed."""
    if decision not in ("approve", "deny"):
        abort(404)
    form = DecisionForm()
    if not form.validate_on_submit():
        flash("Give a reason (at most 500 characters) to approve or deny.", "danger")
        return redirect(url_for("admin.approvals"), code=303)
    try:
        admin_actions.decide_release(db_session(), recipient_id, _admin().username, approve=decision == "approve",
                                     reason=(form.reason.data or "").strip())  # fmt: skip
    except ActionRefused as exc:
        db_session().rollback()
        flash(str(exc), "warning")
    else:
        flash("Release approved and queued." if decision == "approve" else "Release denied.", "success")
    return redirect(url_for("admin.approvals"), code=303)


@bp.get("/settings")
@auth.login_required()
def settings() -> str:
    """Retention now in force (viewers see, admins change)."""
    current = retention.current(db_session(), services().settings.retention)  # fresh, not cached
    form = RetentionForm(data={"short_hours": current.short_hours, "long_days": current.long_days,
                               "record_days": current.record_days})  # fmt: skip
    return _settings_page(form)


@bp.post("/settings")
@auth.login_required(AdminRole.ADMIN)
def save_settings() -> str | tuple[str, int] | BaseResponse:
    """Validate and store new retention times; they apply at once."""
    form = RetentionForm()
    if form.validate_on_submit():
        values = {name: int(getattr(form, name).data) for name in retention.KEYS}
        defaults = services().settings.retention
        try:
            changes = admin_actions.change_retention(db_session(), values, _admin().username, defaults)
        except retention.RetentionInvalid as exc:
            db_session().rollback()
            for name, message in exc.errors.items():
                getattr(form, name).errors = [message]
        else:
            flash("Saved; the new retention applies now." if changes else "Nothing changed.", "success")
            return redirect(url_for("admin.settings"), code=303)
    return _settings_page(form), 400


def _settings_page(form: RetentionForm) -> str:
    rows = admin_actions.audit_page(db_session(), 1, action="retention.changed").items
    return render_template("admin/settings.html", form=form, history=rows[:10],
                           defaults=services().settings.retention)  # fmt: skip


@bp.get("/nodes")
@auth.login_required()
def nodes() -> str:
    """Every configured node with a live health check."""
    svc = services()
    checks = [(node, svc.gateways[node.name].health()) for node in svc.settings.nodes]
    return render_template("admin/nodes.html", checks=checks)


@bp.get("/stats")
@auth.login_required()
def stats_page() -> str:
    """Counts per day, median time to release and top lists over 7, 30 or 90 days."""
    dash = stats.dashboard(db_session(), stats.window(stats.parse_days(request.args.get("days"))))
    # What the service keeps itself for rspamd nodes (now, not per window): count and size.
    kept = stored.totals(db_session()) if any(n.type == "rspamd" for n in services().settings.nodes) else None
    labels = [day.isoformat() for day in dash.window.dates]
    drawn = [(s, charts.bar_chart(f"{s.label} per day", labels, s.counts, key=s.key)) for s in dash.series]
    return render_template("admin/stats.html", d=dash, charts=drawn, windows=stats.WINDOWS, kept=kept,
                           delay=stats.format_duration(dash.release_delay.median))  # fmt: skip


@bp.get("/audit")
@auth.login_required()
def audit() -> str:
    """The audit log, newest first."""
    page = admin_actions.audit_page(db_session(), request.args.get("page", 1, type=int) or 1)
    return render_template("admin/audit.html", page=page)
