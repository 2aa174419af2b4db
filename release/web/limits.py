"""Rate limits (Flask-Limiter): report submissions per IP and per message, ALTCHA
challenges per IP, admin logins per IP.

Views declare their limits with the decorators below (:func:`report_limits`,
:data:`challenge_limit`, :data:`login_limit`); :func:`init_app` builds one
:class:`~flask_limiter.Limiter` per application and installs the declared limits on the
registered views. One limiter per app (not one per module) because Flask-Limiter keeps its
storage on the limiter object: two apps in one process (tests, the demo) must not overwrite
each other's storage.

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

from flask import Flask, current_app, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter, RateLimitExceeded

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
    key: Callable[[], str] | None = None  # None: the client IP
    methods: tuple[str, ...] | None = None  # None: every method
    scope: str | None = None  # separates two limits on one view in the storage keys


def client_ip() -> str:
    """The client's address (ProxyFix has applied X-Forwarded-For when proxies are trusted)."""
    return request.remote_addr or "unknown"


def reported_message() -> str:
    """The (node, message id) a report POST is about, bounded (the link is verified later)."""
    node = request.args.get("n", "")[:63]
    message_id = request.args.get("m", "")[:128]
    digest = hashlib.sha256(f"{node}\0{message_id}".encode()).hexdigest()[:32]
    return f"message:{digest}"


def rate_limited(*limits: RateLimit) -> Callable[[F], F]:
    """Declare limits on a view; they are installed when the app is built (order-independent
    with respect to ``@bp.route``)."""

    def mark(view: F) -> F:
        declared: list[RateLimit] = list(getattr(view, ATTRIBUTE, ()))
        setattr(view, ATTRIBUTE, [*declared, *limits])
        return view

    return mark


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

#: POST /report: per client IP and per reported (node, message id).
report_limits = rate_limited(REPORTS_PER_IP, REPORTS_PER_MESSAGE)
#: GET /captcha/altcha-challenge: per client IP.
challenge_limit = rate_limited(CHALLENGES_PER_IP)
#: For the admin login view: ``@login_limit`` limits its POSTs (sign-in attempts) per client
#: IP to ``limits.logins_per_ip_per_minute``. Works above or below ``@bp.route``.
login_limit = rate_limited(LOGINS_PER_IP)


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Build this app's limiter and install the limits declared on its views.

    Call after every blueprint is registered (views registered later are not limited).
    """
    storage_url = settings.limits.storage_url
    options: dict[str, str | int] = {}
    if storage_url.startswith(("redis://", "rediss://")):
        # Flask-Limiter types the options as str | int; redis-py takes float seconds.
        timeout: Any = REDIS_TIMEOUT_SECONDS
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    limiter = DeclaredLimiter(
        key_func=client_ip,
        storage_uri=storage_url,
        storage_options=options,
        strategy="moving-window",  # no double burst at a window boundary
        key_prefix="release",
        headers_enabled=False,  # Retry-After is set on the 429 page only (see _too_many)
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.init_app(app)
    # Only the limits declared here exist (no default or application-wide ones), so a request
    # that none of them applies to (a GET of the report page, the status endpoint) can skip
    # the limiter's per-request lookups altogether.
    limited_methods: dict[str, frozenset[str] | None] = {}
    for endpoint, view in list(app.view_functions.items()):
        limited: Callable[..., Any] = view
        declared: list[RateLimit] = getattr(view, ATTRIBUTE, [])
        if declared:
            limited_methods[endpoint] = _methods_of(declared)
        for spec in declared:
            limited = limiter.limit(
                spec.rate(settings.limits),
                key_func=spec.key or client_ip,
                methods=list(spec.methods) if spec.methods else None,
                error_message=spec.message,
                scope=spec.scope,
            )(limited)
        methods = limited_methods.get(endpoint)
        app.view_functions[endpoint] = _only_for(methods, limited, view) if methods else limited
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _too_many)
    limiter.limited_methods = limited_methods
    limiter.request_filter(lambda: _no_limit_applies(limited_methods))
    return limiter


class DeclaredLimiter(Limiter):
    """A Limiter whose per-request hook returns at once where no declared limit applies.

    The request filter above says the same, but Flask-Limiter asks it only after working out
    the request's limits and exemptions: 0.05 ms per page view that no limit covers.
    """

    limited_methods: dict[str, frozenset[str] | None] | None = None

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if in_middleware and self.limited_methods is not None and _no_limit_applies(self.limited_methods):
            return
        super()._check_request_limit(callable_name, in_middleware)


def _methods_of(declared: list[RateLimit]) -> frozenset[str] | None:
    """The methods any of ``declared`` applies to; None: every method."""
    if any(spec.methods is None for spec in declared):
        return None
    return frozenset(method for spec in declared for method in spec.methods or ())


def _only_for(methods: frozenset[str], limited: Callable[..., Any], view: Callable[..., Any]) -> Callable[..., Any]:
    """``limited`` for requests with one of ``methods``, the bare ``view`` for the others
    (Flask-Limiter's wrapper looks the limits up again even when none applies)."""

    @functools.wraps(view)
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        return (limited if request.method in methods else view)(*args, **kwargs)

    return dispatch


def _no_limit_applies(limited_methods: dict[str, frozenset[str] | None]) -> bool:
    """True (exempt) when no declared limit covers this request's endpoint and method."""
    endpoint = request.endpoint
    if endpoint not in limited_methods:
        return True
    methods = limited_methods[endpoint]
    return methods is not None and request.method not in methods


def limiter_for(app: Flask | None = None) -> Limiter:
    """The limiter of ``app`` (default: the current app)."""
    found: Limiter = (app or current_app).extensions[EXTENSION]
    return found


def _too_many(exc: RateLimitExceeded) -> ResponseReturnValue:
    """The friendly 429 page, with Retry-After in seconds."""
    from release.web.errors import render_error

    retry_after = 60
    try:
        current = limiter_for().current_limit
        if current is not None:
            retry_after = max(1, math.ceil(current.window[0] - time.time()))
    except Exception:  # noqa: BLE001 - storage trouble: a default Retry-After will do
        retry_after = 60
    wait = f"{math.ceil(retry_after / 60)} minute{'s' if retry_after > 60 else ''}"
    message = f"{exc.description} Please try again in about {wait}."
    response = current_app.make_response(render_error(429, message))
    response.headers["Retry-After"] = str(retry_after)
    return response
