"""PostgreSQL briefly unavailable: this test's connections are terminated over and over
(only those carrying this test's application_name) while the web app takes a burst of requests
and the worker waits. Web answers are 2xx/3xx or a clean 503 page, never a 500; the worker
reconnects (LISTEN included) and runs a job enqueued after the storm."""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qsl

import psycopg
import pytest

from release.core.links import verify
from release.core.reports import Submission
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from release.jobs.worker import start_in_thread
from tests.support.database import PG_ADMIN_URL
from tests.support.faults import build_fault_stack, count_mail, figures, insert_backlog, report_states, wait_for
from tests.support.stack import Stack, close_stack
from tests.support.visitor import report_path

pytestmark = pytest.mark.postgres
STORM_SECONDS = 3.0


@pytest.fixture
def pg_stack(
    postgres_url: str, fault_simulator: SimulatorServer, mailbox: CaptureServer
) -> Iterator[tuple[Stack, str]]:
    name = f"faults-{secrets.token_hex(4)}"
    stack = build_fault_stack(f"{postgres_url}&application_name={name}", fault_simulator, mailbox)
    yield stack, name
    close_stack(stack)


def _kill_storm(name: str, stop: threading.Event, killed: list[int]) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        while not stop.is_set():
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchall()
            killed.append(sum(1 for (ok,) in rows if ok))
            stop.wait(0.01)


def test_database_connections_killed(pg_stack: tuple[Stack, str]) -> None:
    stack, name = pg_stack
    db = stack.services.db
    backlog = insert_backlog(db, stack.sim, 2, 2)
    stack.worker.drain(timeout=30)
    paths = [report_path(stack, tx) for tx in backlog.transactions]
    thread = start_in_thread(stack.worker)  # the worker idles in its LISTEN wait
    time.sleep(0.3)

    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_storm, args=(name, stop, killed), daemon=True)
    killer.start()
    statuses: Counter[int] = Counter()
    bad_pages = 0
    escaped: Counter[str] = Counter()
    client = stack.new_client()
    deadline = time.monotonic() + STORM_SECONDS
    i = 0
    while time.monotonic() < deadline:
        path = paths[i % len(paths)]
        try:
            response = client.get(path if i % 2 else path.replace("/report?", "/report/status?"))
        except Exception as exc:  # noqa: BLE001 - escaped the app: gunicorn would answer 500
            statuses[500] += 1
            escaped[type(exc).__name__] += 1
        else:
            statuses[response.status_code] += 1
            if response.status_code == 503 and "briefly unavailable" not in response.text:
                bad_pages += 1
        i += 1
    stop.set()
    killer.join(timeout=5)

    # After the storm: the web app answers again and a newly enqueued job completes.
    after = client.get(paths[0])
    tx = stack.sim.add_message("anna@partner.example", ["late@example.test"], "After the storm")
    settings = stack.services.settings
    query = dict(parse_qsl(report_path(stack, tx).split("?", 1)[1]))
    link = verify(query, keys=settings.links.keys, nodes=["mx1"], max_age_seconds=3600, now=time.time())
    with db.session() as session:
        stack.services.steps.reports.submit(session, Submission(link, "after", "192.0.2.9"))
    waited = wait_for(lambda: report_states(db).get("notified", 0) == 3, 20, "the job enqueued after the storm")
    stack.worker.stop()
    thread.join(timeout=10)
    mail = count_mail([stack.smtp], [*backlog.addresses, "late@example.test"])
    print("   exceptions that escaped the app (teardown):", dict(escaped))
    server_errors = sum(c for s, c in statuses.items() if s >= 500 and s != 503)
    figures(
        "database_outage",
        "postgres",
        [
            ("storm seconds", STORM_SECONDS),
            ("connections terminated", sum(killed)),
            ("requests during the storm", sum(statuses.values())),
            ("answered 2xx/3xx", sum(c for s, c in statuses.items() if s < 400)),
            ("answered 503 (clean page)", statuses[503] - bad_pages),
            ("answered 500 or other 5xx", server_errors),
            ("first request after the storm", after.status_code),
            ("seconds until the new job ran", round(waited, 1)),
            ("mail duplicates", mail.duplicates),
        ],
    )
    assert sum(killed) > 0
    assert after.status_code == 200
    assert mail.missing == 0 and mail.duplicates == 0
    assert server_errors == 0 and bad_pages == 0, statuses
    assert set(statuses) <= {200, 303, 503}, statuses


def test_pages_work_at_once_after_idle_connections_were_terminated(pg_stack: tuple[Stack, str]) -> None:
    """A database restart closes every pooled connection: the next page views must not see it
    (each checkout notices the closed socket and connects afresh), with no 503 in between."""
    stack, name = pg_stack
    tx = stack.sim.add_message("anna@partner.example", ["idle@example.test"], "Idle")
    path = report_path(stack, tx)
    clients = [stack.new_client() for _ in range(4)]
    assert all(client.get(path).status_code == 200 for client in clients)  # the pool holds connections now
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
    assert killed is not None and killed[0] > 0
    time.sleep(0.2)  # the terminated backends say goodbye and close their sockets
    statuses = Counter(client.get(path).status_code for client in clients for _ in range(5))
    assert statuses == {200: 20}, statuses
