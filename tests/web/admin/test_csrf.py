"""A refused sign-in form: the log names Flask-WTF's reason (never the token) and the page
tells the visitor in plain words what to do, always with status 400."""

from __future__ import annotations

import logging
import secrets
import time

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.support.console import ADMIN, Console
from tests.support.visitor import csrf_token

LOGIN = "/admin/login"
EXPIRED_OR_ELSEWHERE = "The form expired or came from elsewhere. Please reload the page and try again."


def sign_in(client: FlaskClient, token: str | None, **headers: str) -> TestResponse:
    data = {"username": ADMIN[0], "password": ADMIN[1]} | ({"csrf_token": token} if token is not None else {})
    return client.post(LOGIN, data=data, headers=headers)


def refused(logs: pytest.LogCaptureFixture, response: TestResponse, advice: str, reason: str, extra: str = "") -> None:
    """Check the 400 page and the one log line."""
    assert response.status_code == 400
    assert advice in response.text and "CSRF" not in response.text
    lines = [r.getMessage() for r in logs.records if r.getMessage().startswith("CSRF check failed")]
    assert lines == [f"CSRF check failed on POST {LOGIN}: {reason}{extra}"]
    assert "Location" not in response.headers  # not signed in


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def test_no_token(console: Console, logs: pytest.LogCaptureFixture) -> None:
    client = console.stack.new_client()
    client.get(LOGIN)
    response = sign_in(client, None)
    refused(logs, response, "The form arrived without its security token", "The CSRF token is missing.")


def test_garbled_token_is_named_but_never_logged(console: Console, logs: pytest.LogCaptureFixture) -> None:
    client = console.stack.new_client()
    real = csrf_token(client.get(LOGIN).text)
    garbled = real[:-12] + secrets.token_hex(6)
    response = sign_in(client, garbled)
    refused(logs, response, EXPIRED_OR_ELSEWHERE, "The CSRF token is invalid.")
    assert garbled not in logs.text and real not in logs.text
    assert garbled.split(".")[0] not in logs.text  # not even the signed part


def test_token_of_another_session(console: Console, logs: pytest.LogCaptureFixture) -> None:
    other = csrf_token(console.stack.new_client().get(LOGIN).text)
    client = console.stack.new_client()
    client.get(LOGIN)
    response = sign_in(client, other)
    refused(logs, response, EXPIRED_OR_ELSEWHERE, "The CSRF tokens do not match.")
    assert other not in logs.text


def test_a_page_without_its_cookie(console: Console, logs: pytest.LogCaptureFixture) -> None:
    token = csrf_token(console.stack.new_client().get(LOGIN).text)
    response = sign_in(console.stack.new_client(), token)  # a browser that dropped the cookie
    refused(logs, response, "Please allow cookies for this site", "The CSRF session token is missing.")


def test_expired_token(console: Console, logs: pytest.LogCaptureFixture) -> None:
    console.stack.app.config["WTF_CSRF_TIME_LIMIT"] = 0  # the service sets none; an operator may
    client = console.stack.new_client()
    token = csrf_token(client.get(LOGIN).text)
    time.sleep(1.1)  # tokens carry whole seconds
    response = sign_in(client, token)
    refused(logs, response, "The form expired. Please reload the page and try again.", "The CSRF token has expired.")
    assert token not in logs.text


def test_referrer_from_another_host_over_https(console: Console, logs: pytest.LogCaptureFixture) -> None:
    client = console.stack.new_client()
    token = csrf_token(client.get(LOGIN).text)
    response = sign_in(client, token, Referer=f"https://user:Referer-Secret@evil.example:8443/x?csrf_token={token}")
    hosts = " (referrer host 'evil.example:8443', request host 'localhost')"
    refused(logs, response, "sent from a page at another address", "The referrer does not match the host.", hosts)
    assert token not in logs.text and "Referer-Secret" not in logs.text


def test_referrer_missing_over_https(console: Console, logs: pytest.LogCaptureFixture) -> None:
    client = console.stack.new_client()
    token = csrf_token(client.get(LOGIN).text)
    del client.environ_base["HTTP_REFERER"]
    response = sign_in(client, token)
    refused(logs, response, "(the Referer header)", "The referrer header is missing.")


def test_the_same_form_with_a_good_token_signs_in(console: Console, logs: pytest.LogCaptureFixture) -> None:
    client = console.stack.new_client()
    response = sign_in(client, csrf_token(client.get(LOGIN).text))
    assert response.status_code == 303
    assert "CSRF check failed" not in logs.text
