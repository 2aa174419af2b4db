"""Real `flask --app app worker` processes: one SIGKILLed mid-batch (twice: during locate/notify,
then during releases) on SQLite and PostgreSQL, and two workers sharing one backlog on PostgreSQL."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from release.db import migrate
from release.db.engine import Database
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from tests.support.faults import (
    FaultSim,
    count_mail,
    figures,
    insert_backlog,
    job_states,
    jobs_run_twice,
    recipient_states,
    report_states,
    request_all_releases,
    wait_for,
    worker_processes,
    write_config,
)

WORKER = {"concurrency": 16, "backoff_base_seconds": 0.05, "backoff_max_seconds": 0.5, "max_attempts": 100}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def process_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database that separate worker processes can share: a SQLite file or a
    private PostgreSQL schema."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_database")
        return url
    url = f"sqlite:///{tmp_path / 'release.sqlite3'}"
    database = Database(url)
    try:
        migrate.upgrade(database)
    finally:
        database.dispose()
    return url


@pytest.fixture
def db(pg_database: str) -> Iterator[Database]:
    database = Database(pg_database)
    yield database
    database.dispose()


@pytest.fixture
def process_db(process_database: str) -> Iterator[Database]:
    database = Database(process_database)
    yield database
    database.dispose()


def test_worker_killed_mid_batch(
    process_database: str, process_db: Database, fault_simulator: SimulatorServer, mailbox: CaptureServer, logdir: Path
) -> None:
    sim = fault_simulator.sim
    assert isinstance(sim, FaultSim)
    sim.set_latency(0.2)  # every gateway call takes 0.2 s: the kill lands mid-call
    lease = 3
    config = write_config(
        logdir / "config.toml",
        process_database,
        fault_simulator,
        mailbox.port,
        worker={**WORKER, "lease_seconds": lease},
    )
    n, rcpts = 80, 2
    with worker_processes(config, logdir) as spawn:
        first = spawn()
        backlog = insert_backlog(process_db, sim, n, rcpts)
        wait_for(lambda: len(mailbox.messages()) >= 20, 60, "the first mails")
        first.kill()
        killed_at = time.monotonic()
        running_at_kill_1 = job_states(process_db).get("running", 0)
        second = spawn()
        wait_for(lambda: report_states(process_db) == {"notified": n}, 60, "every report notified after the kill")
        recovery_1 = time.monotonic() - killed_at

        # Releases: kill the worker while a batch of release calls is in flight.
        requested = request_all_releases(process_db)
        wait_for(lambda: sum(sim.effective("release").values()) >= 20, 60, "the first releases")
        second.kill()
        killed_at = time.monotonic()
        running_at_kill_2 = job_states(process_db).get("running", 0)
        spawn()
        wait_for(
            lambda: recipient_states(process_db).get("release_requested", 0) == 0,
            60,
            "every release decided after the kill",
        )
        recovery_2 = time.monotonic() - killed_at

    copies = backlog.copies(rcpts)
    mail = count_mail([mailbox], backlog.addresses)
    effective = sim.effective("release")
    calls = sim.calls_per_copy("release")
    recipients = recipient_states(process_db)
    delivered = {(i.transaction, i.queue) for i in sim.delivered()}
    figures(
        "worker_sigkill",
        "postgres" if process_database.startswith("postgresql") else "sqlite",
        [
            ("reports / copies", f"{n} / {len(copies)}"),
            ("jobs running at kill 1 (locate/notify)", running_at_kill_1),
            ("jobs running at kill 2 (release)", running_at_kill_2),
            ("lease seconds", lease),
            ("seconds from kill 1 to all notified", round(recovery_1, 1)),
            ("seconds from kill 2 to all releases decided", round(recovery_2, 1)),
            ("reports lost", n - report_states(process_db).get("notified", 0)),
            ("recipients not mailed", mail.missing),
            ("mail duplicates (same Message-ID, rcpt)", mail.duplicates),
            ("recipients with two different Message-IDs", mail.recipients_with_two_ids),
            ("releases lost (not released)", len(copies) - recipients.get("released", 0)),
            ("copies released twice by the node (affected>0)", sum(1 for c in copies if effective[c] > 1)),
            ("copies whose release request was re-sent", sum(1 for c in copies if calls[c] > 1)),
            ("releases recorded expired/failed (wrong)", recipients.get("expired", 0) + recipients.get("failed", 0)),
            ("dead jobs", job_states(process_db).get("dead", 0)),
        ],
    )
    assert running_at_kill_1 > 0 and running_at_kill_2 > 0, "the kills did not land mid-batch"
    assert report_states(process_db) == {"notified": n}
    assert requested == len(copies)
    assert mail.missing == 0
    # A kill between the SMTP 250 and the commit may repeat a mail: then with the same Message-ID.
    assert mail.recipients_with_two_ids == 0
    assert mail.duplicates <= running_at_kill_1
    assert recipients == {"released": len(copies)}, recipients
    assert delivered == copies
    assert all(effective[c] == 1 for c in copies)
    assert job_states(process_db).get("dead", 0) == 0


def _drain_with(spawn_count: int, db: Database, sim: FaultSim, mailbox: CaptureServer, spawn: object, n: int) -> float:
    before = report_states(db).get("notified", 0)
    started = time.perf_counter()
    insert_backlog(db, sim, n, 2)
    wait_for(lambda: report_states(db).get("notified", 0) - before == n, 120, f"{n} reports with {spawn_count} workers")
    return time.perf_counter() - started


@pytest.mark.postgres
def test_two_workers_share_one_backlog(
    pg_database: str, db: Database, fault_simulator: SimulatorServer, mailbox: CaptureServer, logdir: Path
) -> None:
    sim = fault_simulator.sim
    assert isinstance(sim, FaultSim)
    sim.set_latency(0.02)  # a LAN-ish round trip, so jobs overlap
    config = write_config(
        logdir / "config.toml", pg_database, fault_simulator, mailbox.port, worker={**WORKER, "lease_seconds": 60}
    )
    n = 100
    with worker_processes(config, logdir) as spawn:
        one = spawn()
        before = len(sim.items())
        started = time.perf_counter()
        first = insert_backlog(db, sim, n, 2)
        wait_for(lambda: report_states(db).get("notified", 0) == n, 120, "the backlog with 1 worker")
        one_worker = time.perf_counter() - started
        spawn()
        time.sleep(0.5)  # let the second worker settle into its LISTEN wait
        started = time.perf_counter()
        second = insert_backlog(db, sim, n, 2)
        wait_for(lambda: report_states(db).get("notified", 0) == 2 * n, 120, "the backlog with 2 workers")
        two_workers = time.perf_counter() - started
        assert one.popen.poll() is None
    assert before == 0

    copies = first.copies(2) | second.copies(2)
    addresses = first.addresses + second.addresses
    mail = count_mail([mailbox], addresses)
    moves = sim.calls_per_copy("move")
    # Locates are batched: one find request covers several reports, each report in exactly one.
    # (Lists by full id, with a queue, are the read-backs after a move, not lookups.)
    finds = [b for b in sim.api_calls("F") if all("queue" not in i for i in b["payload"]["conditions"]["ids"])]
    looked_up = Counter(i["transaction"] for body in finds for i in body["payload"]["conditions"]["ids"])
    transactions = {t for t, _ in copies}
    jobs = job_states(db)
    twice = jobs_run_twice(db)
    figures(
        "two_workers",
        "postgres",
        [
            ("reports / copies (2 backlogs)", f"{2 * n} / {len(copies)}"),
            ("jobs run twice (attempts > 1)", twice),
            ("mails per recipient != 1", sum(1 for _ in range(mail.missing)) + mail.recipients_mailed_twice),
            ("mail duplicates (Message-ID, rcpt)", mail.duplicates),
            ("copies moved != 1 time", sum(1 for c in copies if moves[c] != 1)),
            ("find requests / reports looked up", f"{len(finds)} / {sum(looked_up.values())}"),
            ("reports looked up != 1 time", sum(1 for t in transactions if looked_up[t] != 1)),
            ("dead jobs", jobs.get("dead", 0)),
            ("reports/s, 1 worker", round(n / one_worker, 1)),
            ("reports/s, 2 workers", round(n / two_workers, 1)),
        ],
    )
    assert twice == 0
    assert mail.missing == 0 and mail.duplicates == 0 and mail.recipients_mailed_twice == 0
    assert all(moves[c] == 1 for c in copies)
    assert all(looked_up[t] == 1 for t in transactions) and len(finds) < 2 * n
    assert jobs.get("dead", 0) == 0
    assert n / one_worker >= 1 and n / two_workers >= 1


@pytest.mark.postgres
def test_idle_worker_reclaims_expired_lease_promptly(
    pg_database: str, db: Database, fault_simulator: SimulatorServer, mailbox: CaptureServer, logdir: Path
) -> None:
    """The tail of a backlog: only the killed worker's jobs are left (running, lease ticking).
    The new worker must take them soon after the lease runs out, not after its 30 s idle wait."""
    sim = fault_simulator.sim
    sim.set_latency(1.0)
    lease = 2
    config = write_config(
        logdir / "config.toml", pg_database, fault_simulator, mailbox.port, worker={**WORKER, "lease_seconds": lease}
    )
    n = 4
    with worker_processes(config, logdir) as spawn:
        first = spawn()
        insert_backlog(db, sim, n, 1)
        wait_for(lambda: job_states(db).get("running", 0) == n, 10, "all locate jobs running", interval=0.02)
        first.kill()
        second = spawn()
        time.sleep(0.5)  # idle now: nothing queued, everything leased to the dead worker
        sim.set_latency(0)
        waited = wait_for(lambda: report_states(db) == {"notified": n}, 40, "the dead worker's jobs")
        log = second.tail()
    figures("lease_reclaim_idle", "postgres", [("lease seconds", lease), ("seconds until done", round(waited, 1))])
    assert waited < lease + 5, log
