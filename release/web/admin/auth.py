"""Admin console sign-in: local accounts (scrypt hashes), an optional trusted SSO header from
configured reverse proxies, sessions with a maximum age, and the role check for views.

The Flask session holds the admin's id, the time of sign-in and a per-login nonce that must
match the account's row: signing in again or out ends every older session at once.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Callable
from functools import cache, wraps
from typing import ParamSpec, TypeVar

from flask import abort, g, redirect, request, session, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from release.container import services
from release.core import history, sign_in_backoff
from release.db.models import AdminUser, utcnow
from release.db.states import AdminRole
from release.web.database import db_session

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
USERNAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,128}$")

P = ParamSpec("P")
R = TypeVar("R")


class AccountError(ValueError):
    """A user name or password that cannot be used; the message says why."""


def check_new_password(password: str) -> None:
    """Refuse passwords that are too short (or absurdly long)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"the password must be at most {MAX_PASSWORD_LENGTH} characters")


def create_admin(db: Session, username: str, password: str, role: str, actor: str) -> AdminUser:
    """Add an account (and its audit entry) in the caller's transaction."""
    if not USERNAME_RE.match(username):
        raise AccountError("user names are 1-128 characters of A-Z a-z 0-9 . _ @ -")
    if role not in list(AdminRole):
        raise AccountError(f"the role must be one of {', '.join(AdminRole)}")
    check_new_password(password)
    if db.scalar(select(AdminUser.id).where(AdminUser.username == username)) is not None:
        raise AccountError(f"an account named {username!r} already exists")
    user = AdminUser(username=username, password_hash=generate_password_hash(password), role=role)
    db.add(user)
    history.audit(db, actor, "admin.created", f"admin:{username}", f"role {role}")
    db.flush()
    return user


@cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


def authenticate(db: Session, username: str, password: str) -> AdminUser | None:
    """The account if the password matches, else None (same work either way)."""
    user = db.scalar(select(AdminUser).where(AdminUser.username == username))
    if user is None:
        check_password_hash(_dummy_hash(), password)  # same work, so timing does not tell names apart
        return None
    return user if check_password_hash(user.password_hash, password) else None


class SignInThrottled(Exception):
    """Too many recent attempts for this user name: wait ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


def check_sign_in(db: Session, username: str, password: str, client_ip: str) -> AdminUser | None:
    """:func:`authenticate` behind the per-account back-off, auditing a failure; raises
    :class:`SignInThrottled` while the name must wait (the password is then not checked)."""
    wait = sign_in_backoff.claim(db, username, services().ctx.clock())
    if wait:
        raise SignInThrottled(wait)
    user = authenticate(db, username, password)
    if user is None:
        sign_in_backoff.failed(db, username, client_ip)
        db.commit()
    else:
        sign_in_backoff.succeeded(db, username)  # committed by sign_in
    return user


def sign_in(db: Session, user: AdminUser) -> None:
    """Start a fresh session for ``user`` (a new nonce ends any older session); commits."""
    nonce = secrets.token_urlsafe(32)
    user.session_nonce = nonce
    user.last_login_at = utcnow()
    history.audit(db, user.username, "admin.login", f"admin:{user.username}")
    db.commit()
    session.clear()  # nothing from before sign-in survives (session fixation)
    session["admin_id"] = user.id
    session["admin_nonce"] = nonce
    session["admin_since"] = int(time.time())


def sign_out(db: Session, user: AdminUser) -> None:
    """End the session here and everywhere; commits."""
    user.session_nonce = None
    history.audit(db, user.username, "admin.logout", f"admin:{user.username}")
    db.commit()
    session.clear()


def _proxy_peer() -> str | None:
    """The address that connected to us (before ProxyFix rewrote it to the client's)."""
    original = request.environ.get("werkzeug.proxy_fix.orig", {})
    address: str | None = original.get("REMOTE_ADDR", request.remote_addr)
    return address


def _from_trusted_header(db: Session) -> AdminUser | None:
    settings = services().settings.admin
    if not settings.trusted_user_header or _proxy_peer() not in settings.trusted_proxy_addresses:
        return None
    name = request.headers.get(settings.trusted_user_header, "").strip()
    if not name:
        return None
    return db.scalar(select(AdminUser).where(AdminUser.username == name))


def _from_session(db: Session) -> AdminUser | None:
    admin_id, nonce, since = session.get("admin_id"), session.get("admin_nonce"), session.get("admin_since")
    if not isinstance(admin_id, int) or not isinstance(nonce, str) or not isinstance(since, int):
        return None
    max_age = services().settings.admin.session_hours * 3600
    if time.time() - since > max_age:
        session.clear()
        return None
    user = db.get(AdminUser, admin_id)
    if user is None or not user.session_nonce or not hmac.compare_digest(user.session_nonce, nonce):
        session.clear()
        return None
    return user


def current_admin() -> AdminUser | None:
    """The signed-in admin of this request (trusted proxy header first), or None."""
    if "admin" not in g:
        db = db_session()
        g.admin = _from_trusted_header(db) or _from_session(db)
        g.admin_via_sso = g.admin is not None and session.get("admin_id") != g.admin.id
    user: AdminUser | None = g.admin
    return user


def login_required(role: str = AdminRole.VIEWER) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Anonymous visitors go to the sign-in page; a viewer on an admin-only view gets 403."""
    if role not in list(AdminRole):
        raise ValueError(f"unknown role {role!r}")

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            user = current_admin()
            if user is None:
                target = request.full_path if request.method == "GET" else request.path
                abort(redirect(url_for("admin.login", next=target.rstrip("?"))))
            if role == AdminRole.ADMIN and user.role != AdminRole.ADMIN:
                abort(403, description="Your account can look but not change anything (viewer role).")
            return view(*args, **kwargs)

        return wrapped

    return decorate


def safe_next(target: str | None) -> str:
    """Where to go after sign-in (or an action): only a path inside the console, never another
    site, and nothing a Location header cannot carry as it is (control or format characters)."""
    if target and target.startswith("/admin") and "\\" not in target and target.isprintable():
        return target
    return url_for("admin.reports")
