"""Sign-in back-off per user name: it holds across client addresses and app instances (the
database keeps it), grows with each further failure, refuses even the right password while
it lasts, treats unknown names the same, and every failed sign-in is audited without the
password."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from datetime import datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from release.core import purge, sign_in_backoff
from release.core.sign_in_backoff import FREE_ATTEMPTS, MAX_WAIT_SECONDS
from release.db.models import AuditEntry, SignInFailures, utcnow
from release.web.admin import auth
from tests.support.stack import Stack, StackFactory
from tests.support.visitor import csrf_token

ALICE = ("alice-admin", "correct horse battery staple")
BOB = ("bob-viewer", "another long passphrase 42")
WRONG = "Tr0ub4dor&3-not-it"
_addresses = itertools.count(1)


class Clock:
    """The domain clock, moved by the test instead of waiting."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def with_accounts(stack: Stack) -> Stack:
    with stack.services.db.session() as session:
        auth.create_admin(session, ALICE[0], ALICE[1], "admin", actor="test")
        auth.create_admin(session, BOB[0], BOB[1], "viewer", actor="test")
        session.commit()
    return stack


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    return with_accounts(make_stack())


@pytest.fixture
def clock(stack: Stack) -> Clock:
    clock = Clock()
    stack.services.ctx.clock = clock
    return clock


def attempt(stack: Stack, username: str, password: str, ip: str | None = None) -> TestResponse:
    """One sign-in from a new client address (each guess from somewhere else)."""
    client = stack.new_client()
    n = next(_addresses)
    client.environ_base["REMOTE_ADDR"] = ip or f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    page = client.get("/admin/login")
    return client.post(
        "/admin/login", data={"csrf_token": csrf_token(page.text), "username": username, "password": password}
    )


def refused(response: TestResponse) -> int:
    """The friendly 429 page; returns its Retry-After."""
    assert response.status_code == 429, response.text
    assert response.mimetype == "text/html"
    assert "Too many failed sign-ins for this user name." in response.text
    assert "Please try again in about" in response.text and "Traceback" not in response.text
    return int(response.headers["Retry-After"])


def use_up_free_attempts(stack: Stack, username: str) -> None:
    codes = [attempt(stack, username, WRONG).status_code for _ in range(FREE_ATTEMPTS)]
    assert codes == [401] * FREE_ATTEMPTS


def test_many_addresses_guessing_one_account_wait_longer_and_longer(stack: Stack, clock: Clock) -> None:
    use_up_free_attempts(stack, ALICE[0])
    waits = [refused(attempt(stack, ALICE[0], WRONG))]
    while waits[-1] < MAX_WAIT_SECONDS:
        clock.advance(waits[-1])  # wait it out exactly, then guess again from elsewhere
        assert attempt(stack, ALICE[0], WRONG).status_code == 401
        waits.append(refused(attempt(stack, ALICE[0], WRONG)))
    print(f"Retry-After for one account guessed from new addresses each time: {waits}")
    assert waits[:5] == [1, 2, 4, 8, 16]
    assert waits == sorted(waits) and waits[-1] == MAX_WAIT_SECONDS
    # The name is compared without regard to case.
    assert refused(attempt(stack, ALICE[0].upper(), WRONG)) == MAX_WAIT_SECONDS
    # A refused attempt is not counted: waiting the cap out lets the next guess through.
    clock.advance(MAX_WAIT_SECONDS)
    assert attempt(stack, ALICE[0], WRONG).status_code == 401
    assert refused(attempt(stack, ALICE[0], WRONG)) == MAX_WAIT_SECONDS


def test_the_right_password_waits_too_and_then_resets_the_count(stack: Stack) -> None:
    use_up_free_attempts(stack, ALICE[0])  # the last one earned a wait of 1 s (real time here)
    assert refused(attempt(stack, ALICE[0], ALICE[1])) == 1
    time.sleep(1.05)
    assert attempt(stack, ALICE[0], ALICE[1]).status_code == 303
    # Signed in: the count starts again from zero.
    use_up_free_attempts(stack, ALICE[0])
    with stack.services.db.session() as session:
        assert session.scalars(select(SignInFailures.attempts)).all() == [FREE_ATTEMPTS]


def test_unknown_names_are_limited_the_same_way(stack: Stack, clock: Clock) -> None:
    def sequence(username: str) -> list[tuple[int, str | None]]:
        answers = []
        for _ in range(FREE_ATTEMPTS + 3):
            response = attempt(stack, username, WRONG)
            answers.append((response.status_code, response.headers.get("Retry-After")))
            if response.status_code == 429:
                clock.advance(int(response.headers["Retry-After"]))
        return answers

    known, unknown = sequence(ALICE[0]), sequence("mallory-nobody")
    assert known == unknown
    assert (429, "1") in known


def test_other_accounts_are_unaffected(stack: Stack, clock: Clock) -> None:
    use_up_free_attempts(stack, ALICE[0])
    refused(attempt(stack, ALICE[0], ALICE[1]))
    assert attempt(stack, BOB[0], BOB[1]).status_code == 303
    assert attempt(stack, BOB[0], WRONG).status_code == 401


def test_the_back_off_holds_across_app_instances(make_stack: StackFactory) -> None:
    """Two web processes (two apps, one database, each with its own memory limiter)."""
    first = with_accounts(make_stack())
    second = make_stack()
    for i in range(FREE_ATTEMPTS):
        assert attempt((first, second)[i % 2], ALICE[0], WRONG).status_code == 401
    refused(attempt(second, ALICE[0], ALICE[1]))
    refused(attempt(first, ALICE[0], ALICE[1]))


def test_failed_sign_ins_are_audited_without_the_password(stack: Stack) -> None:
    secret_guess = "my-Secret-guess-7781"
    assert attempt(stack, ALICE[0], secret_guess, ip="203.0.113.9").status_code == 401
    assert attempt(stack, "Ghost.User", secret_guess, ip="198.51.100.23").status_code == 401
    with stack.services.db.session() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "admin.login_failed")).all()
        everything = [(e.actor, e.action, e.target, e.detail) for e in session.scalars(select(AuditEntry))]
        counts = [(f.key, f.attempts) for f in session.scalars(select(SignInFailures))]
    assert [(r.actor, r.target, r.detail) for r in rows] == [
        (ALICE[0], f"admin:{ALICE[0]}", "from 203.0.113.9"),
        ("Ghost.User", "admin:Ghost.User", "from 198.51.100.23"),
    ]
    assert secret_guess not in repr(everything)
    # The counts keep no name a stranger typed, only a hash of it.
    assert "Ghost" not in repr(counts) and "ghost" not in repr(counts)


def test_the_audited_name_is_cleaned_and_bounded(stack: Stack) -> None:
    typed = "\x00adm\x1b[31min\u202egnp.exe\ud800\t" + "x" * 300
    with stack.services.db.session() as session:
        sign_in_backoff.failed(session, typed, "192.0.2.1")
        session.commit()
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "admin.login_failed"))
    assert entry is not None
    assert entry.actor == ("adm[31mingnp.exe" + "x" * 300)[:128]
    assert entry.target == "admin:" + entry.actor
    assert sign_in_backoff.printable("\u200b\u2066x\x7f") == "x"


def test_old_counts_are_purged_by_the_periodic_enforcement(stack: Stack) -> None:
    now = utcnow()
    with stack.services.db.session() as session:
        assert sign_in_backoff.claim(session, "old-name", now - sign_in_backoff.WINDOW - timedelta(seconds=1)) == 0
        assert sign_in_backoff.claim(session, "recent-name", now - timedelta(minutes=5)) == 0
        purge.enforce(session, stack.services.gateways, stack.services.settings, now)
        assert session.scalars(select(SignInFailures.key)).all() == [hashlib.sha256(b"recent-name").hexdigest()]


def test_guesses_sent_in_parallel_are_counted_one_by_one(stack: Stack) -> None:
    """Eight guesses at once for a name nobody tried yet: the first five go through, the rest
    wait (each attempt is counted under the row's lock before its password is checked)."""
    clients = []
    for _ in range(FREE_ATTEMPTS + 3):
        client = stack.new_client()
        client.environ_base["REMOTE_ADDR"] = f"10.99.0.{len(clients) + 1}"
        clients.append((client, csrf_token(client.get("/admin/login").text)))
    barrier = threading.Barrier(len(clients))
    codes: list[int] = []

    def guess(client: FlaskClient, token: str) -> None:
        barrier.wait()
        data = {"csrf_token": token, "username": "carol-new", "password": WRONG}
        codes.append(client.post("/admin/login", data=data).status_code)

    threads = [threading.Thread(target=guess, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(codes) == [401] * FREE_ATTEMPTS + [429] * 3
