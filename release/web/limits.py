"""Rate limits (Flask-Limiter): report submissions per IP and per message, ALTCHA
challenges per IP, admin logins per IP (per user name: release/core/sign_in_backoff.py).

Views declare their limits with the decorators below (:data:`report_limits`,
:data:`challenge_limit`, :data:`login_limit`), above or below ``@bp.route``: the decorator
only records the limit on the view. :func:`init_app` builds one
:class:`~flask_limiter.Limiter` per application whose default limits are the limits of
:data:`ALL`, each exempt where the request's view did not declare it. Default limits are
checked in the limiter's own before-request hook (after CSRF), with the same keys and
scopes as decorated ones (``<endpoint>:<scope>``). One limiter per app (not one per module)
because Flask-Limiter keeps its storage on the limiter object: two apps in one process
(tests, the demo) must not share or overwrite each other's storage.

Storage: ``limits.storage_url`` - ``memory://`` counts per process; ``redis://`` lets every
web process share the counters.

When the storage fails (Redis down) the limiter does not fail the request: it logs a
warning and counts in this process's memory until Redis answers again (re-checked with
backoff). Should even that fail, the error is logged and the request goes through
(``swallow_errors``): fail open. Rationale: the CAPTCHA, the per-recipient notification cap
(in the database, not here) and the comment bound still hold, and a Redis outage must not
take the sender's only way to rescue their mail down with it. See docs/abuse.md.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limit, Limiter, RateLimitExceeded

from release.config import LimitsSettings, Settings

F = TypeVar("F", bound=Callable[..., Any])
EXTENSION = "release_limiter"
ATTRIBUTE = "_release_rate_limits"
# Asking for an ALTCHA challenge costs nothing and a browser asks once per form; 60 a minute
# per address is generous for people and keeps the endpoint from being a free HMAC oracle.
CHALLENGES_PER_IP_PER_MINUTE = 60
# Redis calls must not hang a request when Redis is unreachable.
REDIS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class RateLimit:
    """One declared limit; ``rate`` turns the settings into a Flask-Limiter rate string."""

    rate: Callable[[LimitsSettings], str]
    message: str
    scope: str  # names the limit in the storage keys (two limits on one view stay apart)
    key: Callable[[], str] | None = None  # None: the client IP
    methods: tuple[str, ...] | None = None  # None: every method


def client_ip() -> str:
    """The client's address (ProxyFix has applied X-Forwarded-For when proxies are trusted)."""
    return request.remote_addr or "unknown"


def reported_message() -> str:
    """The (node, message id) a report POST is about, bounded (the link is verified later)."""
    node = request.args.get("n", "")[:63]
    message_id = request.args.get("m", "")[:128]
    digest = hashlib.sha256(f"{node}\0{message_id}".encode()).hexdigest()[:32]
    return f"message:{digest}"


REPORTS_PER_IP = RateLimit(
    rate=lambda s: f"{s.reports_per_ip_per_hour}/hour",
    message="Too many reports were sent from your network address.",
    methods=("POST",),
    scope="reports-per-ip",
)
REPORTS_PER_MESSAGE = RateLimit(
    rate=lambda s: f"{s.reports_per_message_per_hour}/hour",
    message="This message was submitted too many times.",
    key=reported_message,
    methods=("POST",),
    scope="reports-per-message",
)
CHALLENGES_PER_IP = RateLimit(
    rate=lambda _s: f"{CHALLENGES_PER_IP_PER_MINUTE}/minute",
    message="Too many anti-robot challenges were requested from your network address.",
    scope="challenges-per-ip",
)
LOGINS_PER_IP = RateLimit(
    rate=lambda s: f"{s.logins_per_ip_per_minute}/minute",
    message="Too many sign-in attempts from your network address.",
    methods=("POST",),
    scope="logins-per-ip",
)

#: Every limit a view may declare: each app's limiter knows these.
ALL = (REPORTS_PER_IP, REPORTS_PER_MESSAGE, CHALLENGES_PER_IP, LOGINS_PER_IP)


def rate_limited(*limits: RateLimit) -> Callable[[F], F]:
    """Declare limits on a view (each one of :data:`ALL`); the view itself is not wrapped, so
    this works above or below ``@bp.route``."""
    unknown = [spec for spec in limits if spec not in ALL]
    if unknown:
        raise ValueError(f"not in limits.ALL, so no limiter would enforce them: {unknown}")

    def mark(view: F) -> F:
        declared: list[RateLimit] = list(getattr(view, ATTRIBUTE, ()))
        setattr(view, ATTRIBUTE, [*declared, *limits])
        return view

    return mark


#: POST /report: per client IP and per reported (node, message id).
report_limits = rate_limited(REPORTS_PER_IP, REPORTS_PER_MESSAGE)
#: GET /captcha/altcha-challenge: per client IP.
challenge_limit = rate_limited(CHALLENGES_PER_IP)
#: For the admin login view: ``@login_limit`` limits its POSTs (sign-in attempts) per client
#: IP to ``limits.logins_per_ip_per_minute``. Works above or below ``@bp.route``.
login_limit = rate_limited(LOGINS_PER_IP)


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Build this app's limiter: the limits of :data:`ALL`, each where a view declared it."""
    storage_url = settings.limits.storage_url
    options: dict[str, str | int] = {}
    if storage_url.startswith(("redis://", "rediss://")):
        # Flask-Limiter types the options as str | int; redis-py takes float seconds.
        timeout: Any = REDIS_TIMEOUT_SECONDS
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    limiter = Limiter(
        key_func=client_ip,
        default_limits=[_limit(spec, settings.limits) for spec in ALL],
        storage_uri=storage_url,
        storage_options=options,
        strategy="moving-window",  # no double burst at a window boundary
        key_prefix="release",
        headers_enabled=False,  # Retry-After is set on the 429 page only (see _too_many)
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    # Most requests reach views that declare no limit: skip the limiter's lookups for them.
    limiter.request_filter(lambda: not _declared())
    limiter.init_app(app)
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _too_many)
    return limiter


def _limit(spec: RateLimit, settings: LimitsSettings) -> Limit:
    return Limit(
        spec.rate(settings),
        key_function=spec.key,
        scope=spec.scope,
        methods=spec.methods,
        error_message=spec.message,
        exempt_when=functools.partial(_not_declared, spec),
    )


def _declared() -> tuple[RateLimit, ...]:
    """The limits the view of this request declared."""
    view = current_app.view_functions.get(request.endpoint or "")
    return tuple(getattr(view, ATTRIBUTE, ()))


def _not_declared(spec: RateLimit) -> bool:
    return spec not in _declared()


def limiter_for(app: Flask | None = None) -> Limiter:
    """The limiter of ``app`` (default: the current app)."""
    found: Limiter = (app or current_app).extensions[EXTENSION]
    return found


def _too_many(exc: RateLimitExceeded) -> ResponseReturnValue:
    """The friendly 429 page, with Retry-After in seconds."""
    retry_after = 60
    try:
        current = limiter_for().current_limit
        if current is not None:
            retry_after = max(1, math.ceil(current.window[0] - time.time()))
    except Exception:  # noqa: BLE001 - storage trouble: a default Retry-After will do
        retry_after = 60
    return too_many(str(exc.description), retry_after)


def too_many(message: str, retry_after: int) -> Response:
    """The friendly 429 page saying ``message`` and when to come back, with Retry-After."""
    from release.web.errors import render_error

    wait = f"{math.ceil(retry_after / 60)} minute{'s' if retry_after > 60 else ''}"
    response = current_app.make_response(render_error(429, f"{message} Please try again in about {wait}."))
    response.headers["Retry-After"] = str(retry_after)
    return response
