"""The report form's CSRF token and its session cookie are made the short way (release/csrf.py,
release/sessions.py): Flask-WTF and Flask must read them with their own code, and the bytes
must be the ones the libraries write."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from flask import Flask, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import generate_csrf, validate_csrf
from werkzeug.http import parse_cookie

from release.web.csrf import FIELD, CsrfTokens
from release.web.sessions import CachedSignerSessionInterface
from tests.conftest import Stack
from tests.integration.helpers import csrf_token, report_path

FORM_EXPIRED = "The form expired or came from elsewhere"
NOW = 1_790_000_000.25
RAW = hashlib.sha1(b"a visitor").hexdigest()  # noqa: S324 - the shape Flask-WTF stores (random-looking hex)


def _app(*, secure: bool) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s" * 40, SECRET_KEY_FALLBACKS=["old" * 12], SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_NAME="__Host-session" if secure else "session",
    )  # fmt: skip
    app.session_interface = CachedSignerSessionInterface()
    return app


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(time, "time", lambda: NOW)  # itsdangerous reads time.time()
    yield


def _saved_cookie(app: Flask, interface: SecureCookieSessionInterface, values: dict[str, object]) -> list[str]:
    with app.test_request_context("/"):
        saved = interface.open_session(app, request)
        assert saved is not None
        saved.update(values)
        response = app.response_class("x")
        response.headers["Vary"] = "Accept-Language"
        interface.save_session(app, saved, response)
        return [*response.headers.getlist("Set-Cookie"), response.headers["Vary"]]


@pytest.mark.parametrize("secure", [False, True])
def test_the_session_cookie_is_the_one_flask_writes(frozen_clock: None, secure: bool) -> None:
    app = _app(secure=secure)
    ours = _saved_cookie(app, CachedSignerSessionInterface(), {FIELD: RAW})
    assert ours == _saved_cookie(app, SecureCookieSessionInterface(), {FIELD: RAW})
    assert ours[0].startswith("__Host-session=" if secure else "session=") and ours[-1] == "Accept-Language, Cookie"
    # Sessions holding anything else are saved by Flask's own code, unchanged.
    for other in ({FIELD: RAW, "lang": "sv"}, {FIELD: "not-a-sha1"}, {"lang": "sv"}):
        assert _saved_cookie(app, CachedSignerSessionInterface(), other) == _saved_cookie(
            app, SecureCookieSessionInterface(), other
        )


def test_the_token_is_the_one_flask_wtf_makes_and_it_validates(frozen_clock: None) -> None:
    app = _app(secure=False)
    with app.test_request_context("/"):
        session[FIELD] = RAW
        expected = generate_csrf()
    with app.test_request_context("/"):
        session[FIELD] = RAW
        assert CsrfTokens(app.secret_key).token() == expected
        validate_csrf(expected)  # raises on a bad token


def test_a_first_visit_gets_a_new_secret_that_flask_reads_back() -> None:
    """Without a frozen clock and with fresh randomness, as a visitor gets them."""
    app = _app(secure=True)
    tokens = CsrfTokens(app.secret_key)
    secrets = set()
    for _ in range(50):
        with app.test_request_context("/") as context:
            token = tokens.token()
            assert tokens.token() == token  # one token per request, as Flask-WTF caches it
            response = app.response_class("x")
            app.session_interface.save_session(app, context.session, response)
            cookie = parse_cookie(response.headers["Set-Cookie"].split(";", 1)[0])["__Host-session"]
        opened = SecureCookieSessionInterface().get_signing_serializer(app).loads(cookie)  # type: ignore[union-attr]
        assert set(opened) == {FIELD}
        secrets.add(opened[FIELD])
        with app.test_request_context("/"):
            session[FIELD] = opened[FIELD]
            validate_csrf(token)
    assert len(secrets) == 50


def test_the_report_page_cookie_and_token_carry_a_report(stack: Stack) -> None:
    """On the real app: the page's token with the page's cookie is accepted by the POST, the
    token with another visitor's cookie is refused."""
    path = report_path(stack, "csrf.1@mx-1")
    first, second = stack.new_client(), stack.new_client()
    token = csrf_token(first.get(path).text)
    csrf_token(second.get(path).text)  # the second visitor has a session of their own
    refused = second.post(path, data={"csrf_token": token, "comment": "Real mail."})
    assert refused.status_code == 400 and FORM_EXPIRED in refused.text
    accepted = first.post(path, data={"csrf_token": token, "comment": "Real mail."})
    # Past the CSRF check, stopped at the CAPTCHA (none was solved here).
    assert accepted.status_code == 400 and FORM_EXPIRED not in accepted.text
    assert "The anti-robot check did not pass" in accepted.text
