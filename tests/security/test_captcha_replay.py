"""One ALTCHA solution makes one report, however many web processes there are.

Two real gunicorn servers share one database (a SQLite file, a PostgreSQL schema, or SQLite
with Redis as the limits' storage); the same solved challenge is posted to both at once, then
once more. Exactly one report is stored; the other uses get the form back with the CAPTCHA
error, never a 500. Then the stores on their own: the database's, Redis's, and Redis down.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import func, select

from release.captcha.replay import REDIS_PREFIX, MemoryReplayGuard, RedisReplayGuard
from release.core import purge, retention
from release.core.links import build_report_url
from release.db import migrate
from release.db.engine import Database
from release.db.models import Report, UsedSolution, utcnow
from release.db.replay import DatabaseReplayGuard
from release.devtools.mailcapture import CaptureServer, free_port
from release.devtools.simulator import SimulatorServer
from tests.support.altcha import solve_altcha
from tests.support.config import make_config, write_config
from tests.support.stack import StackFactory
from tests.support.visitor import csrf_token, report_path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LINK_KEY = "replay-test-link-key-0123456789"
CAPTCHA_ERROR = "The anti-robot check did not pass"


@dataclass(frozen=True)
class Shared:
    """Where the two servers keep their state."""

    database_url: str
    limits_storage: str = "memory://"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "sqlite+redis"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shared]:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'release.sqlite3'}"
    storage = "memory://"
    if request.param == "sqlite+redis":
        storage = request.getfixturevalue("redis_url")
    db = Database(url)
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()
    yield Shared(url, storage)


def write_shared_config(path: Path, shared: Shared, simulator: SimulatorServer, smtp_port: int) -> Path:
    """One config for every process of a test: same secrets, database and limit storage."""
    limits = {"storage_url": shared.limits_storage, "reports_per_ip_per_hour": 1000000,
              "reports_per_message_per_hour": 1000000}  # fmt: skip
    config = make_config(shared.database_url, simulator, smtp_port, app={"public_url": "http://127.0.0.1"},
                         links={"keys": [LINK_KEY]}, limits=limits)  # fmt: skip
    return write_config(path, config)


def start_web(config: Path, log_path: Path, stack: ExitStack) -> str:
    """One gunicorn server with one worker (its own process), stopped when ``stack`` closes."""
    port = free_port()
    env = {**os.environ, "RELEASE_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    log = stack.enter_context(open(log_path, "w"))  # noqa: SIM115
    proc = subprocess.Popen(
        [BIN / "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "app:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    stack.callback(_stop, proc)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).ok:
                return base
        except requests.RequestException:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def two_servers(
    shared: Shared, simulator: SimulatorServer, smtp_server: CaptureServer, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    config = write_shared_config(tmp_path / "config.toml", shared, simulator, smtp_server.port)
    with ExitStack() as stack:
        first = start_web(config, tmp_path / "web-1.log", stack)
        second = start_web(config, tmp_path / "web-2.log", stack)
        yield first, second
        for name in ("web-1.log", "web-2.log"):
            text = (tmp_path / name).read_text()
            assert "Traceback" not in text, text


def open_form(base: str, simulator: SimulatorServer) -> Callable[[str], requests.Response]:
    """Open a fresh message's report form on ``base``; returns a function posting it with a payload."""
    tx = simulator.sim.add_message("anna@partner.example", ["rita@example.com"], "Notes")
    link = build_report_url(base, LINK_KEY, "mx1", tx, int(time.time()))
    session = requests.Session()
    page = session.get(link, timeout=10)
    assert page.status_code == 200, page.text
    token = csrf_token(page.text)

    def post(payload: str) -> requests.Response:
        form = {"csrf_token": token, "comment": "We met at the fair.", "altcha": payload}
        return session.post(link, data=form, timeout=30, allow_redirects=False)

    return post


def count_reports(database_url: str) -> int:
    db = Database(database_url)
    try:
        with db.session() as session:
            return int(session.scalar(select(func.count()).select_from(Report)) or 0)
    finally:
        db.dispose()


def test_one_solution_makes_one_report_across_processes(
    two_servers: tuple[str, str], shared: Shared, simulator: SimulatorServer
) -> None:
    first, second = two_servers
    posts = [open_form(first, simulator), open_form(second, simulator)]
    challenge = requests.get(f"{first}/captcha/altcha-challenge", timeout=10).json()
    payload = solve_altcha(challenge)

    # Both servers get the same solution at the same moment.
    answers: list[requests.Response] = []
    barrier = threading.Barrier(len(posts))

    def submit(post: Callable[[str], requests.Response]) -> None:
        barrier.wait()
        answers.append(post(payload))

    threads = [threading.Thread(target=submit, args=(post,)) for post in posts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [303, 400], [(a.status_code, a.text[:300]) for a in answers]
    refused = next(a for a in answers if a.status_code == 400)
    assert CAPTCHA_ERROR in refused.text
    # A third use, later, on either server: refused the same friendly way.
    for base in (first, second):
        again = open_form(base, simulator)(payload)
        assert again.status_code == 400, again.text[:300]
        assert CAPTCHA_ERROR in again.text
    assert count_reports(shared.database_url) == 1

    digest = hashlib.sha256(challenge["signature"].encode()).hexdigest()
    if shared.limits_storage.startswith("redis://"):
        client = redis.Redis.from_url(shared.limits_storage)
        assert client.exists(REDIS_PREFIX + digest)
        assert 0 < client.ttl(REDIS_PREFIX + digest) <= 600
        client.delete(REDIS_PREFIX + digest)
    else:
        db = Database(shared.database_url)
        try:
            with db.session() as session:
                assert session.scalar(select(func.count()).select_from(UsedSolution)) == 1
                assert session.get(UsedSolution, digest) is not None
        finally:
            db.dispose()


def test_a_report_post_that_read_the_database_first_does_not_wait_for_itself(make_stack: StackFactory) -> None:
    """On SQLite the request's own transaction must not hold the write lock while the
    solution is recorded in its own (it would wait out the 30 s busy timeout, then 503)."""
    stack = make_stack()
    client = stack.new_client()
    path = report_path(stack, stack.sim.add_message("anna@partner.example", ["rita@example.com"], "Notes"))
    page = client.get(path)
    form = {"csrf_token": csrf_token(page.text), "comment": "We met at the fair."}
    form["altcha"] = solve_altcha(client.get("/captcha/altcha-challenge").get_json())
    retention.invalidate()  # so the link check reads the retention from the database again
    started = time.monotonic()
    response = client.post(path, data=form)
    assert response.status_code == 303, response.text
    assert time.monotonic() - started < 5
    # And the solution is used up.
    other = report_path(stack, stack.sim.add_message("anna@partner.example", ["rita@example.com"], "More"))
    again = client.post(other, data={**form, "csrf_token": csrf_token(client.get(other).text)})
    assert again.status_code == 400
    assert CAPTCHA_ERROR in again.text


# -- the stores on their own ---------------------------------------------------------------


def test_the_database_store_lets_each_solution_through_once_and_purges_expired_ones(make_stack: StackFactory) -> None:
    stack = make_stack()
    guard = DatabaseReplayGuard(stack.services.db)
    soon, later = time.time() + 60, time.time() + 600
    assert guard("signature-a", soon) is False
    assert guard("signature-a", soon) is True
    assert guard("signature-b", later) is False
    with stack.services.db.session() as session:
        purge.enforce(session, stack.services.gateways, stack.services.settings, utcnow() + timedelta(seconds=120))
        left = session.scalars(select(UsedSolution.key)).all()
    assert left == [hashlib.sha256(b"signature-b").hexdigest()]


def test_the_redis_store_lets_each_solution_through_once(redis_url: str) -> None:
    fallback = MemoryReplayGuard()
    guard = RedisReplayGuard.from_url(redis_url, fallback=fallback)
    key = "signature-" + secrets.token_hex(8)
    assert guard(key, time.time() + 60) is False
    assert guard(key, time.time() + 60) is True
    client = redis.Redis.from_url(redis_url)
    name = REDIS_PREFIX + hashlib.sha256(key.encode()).hexdigest()
    assert 0 < client.ttl(name) <= 60
    client.delete(name)
    assert len(fallback) == 0


def test_redis_down_the_database_answers_with_a_warning(
    make_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack()
    guard = RedisReplayGuard.from_url(
        f"redis://127.0.0.1:{free_port()}/0", fallback=DatabaseReplayGuard(stack.services.db)
    )
    caplog.set_level(logging.WARNING, logger="release.captcha.replay")
    assert guard("signature-c", time.time() + 60) is False
    assert guard("signature-c", time.time() + 60) is True
    assert "Redis unreachable" in caplog.text and "using the database" in caplog.text
