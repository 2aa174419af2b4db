"""Fault-injection helpers: an instrumented simulator, the fault suite's stack, a bulk backlog,
counters, worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import func, insert, select, text

from release.db.engine import Database
from release.db.models import Event, Job, Recipient, Report
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import HalonSimulator, Ids, RecordedRequest, SimulatorServer
from release.jobs.wake import CHANNEL as WAKE_CHANNEL
from tests.support.stack import Stack, build_stack

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NODE = "mx1"
SIM_USER, SIM_PASSWORD = "release", "sim-password-0123"

# Every figure printed by a test, gathered for the summary at the end of the session.
FIGURES: list[tuple[str, str, str, Any]] = []


class FaultSim(HalonSimulator):
    """The Halon simulator, also logging what each update really changed and which requests
    were stalled by ``timeout_next`` (the client gave up on those; the node still acted)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.effects: list[tuple[str, int, str]] = []  # (transaction, queue, "move"|"release"|"delete")
        self.stalled: list[RecordedRequest] = []
        self._local = threading.local()
        self.stall_seconds = -1.0

    def timeout_next(self, n: int = 1, seconds: float = 30.0, command: str | None = None) -> None:
        self.stall_seconds = seconds
        super().timeout_next(n, seconds, command)

    def _api(self, request: Any, record: RecordedRequest, method: str) -> Any:
        self._local.record = record
        return super()._api(request, record, method)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and seconds == self.stall_seconds:
            with self._lock:
                self.stalled.append(self._local.record)
        super()._sleep(seconds)

    def _update(self, ids: Ids, payload: dict[str, Any]) -> dict[str, Any]:
        kind = "release" if "move" in payload else "move" if "metadata" in payload else "delete"
        with self._lock:
            matched = [(i.transaction, i.queue) for i in self._items if i.state in ("hold", "active") and ids.match(i)]
            answer = super()._update(ids, payload)
            self.effects.extend((tx, q, kind) for tx, q in matched)
        return answer

    # -- counters ---------------------------------------------------------------------------

    def calls_per_copy(self, kind: str, *, stalled: bool | None = None) -> Counter[tuple[str, int]]:
        """Update requests of ``kind`` per (transaction, queue); ``stalled``: only / never those."""
        with self._lock:
            stalled_ids = {id(r) for r in self.stalled}
            records = list(self.requests_log)
        counts: Counter[tuple[str, int]] = Counter()
        for r in records:
            body = r.body
            if r.command != "G" or not isinstance(body, dict):
                continue
            payload = body.get("payload", {})
            this = "release" if "move" in payload else "move" if "metadata" in payload else "delete"
            if this != kind or (stalled is not None and (id(r) in stalled_ids) != stalled):
                continue
            for entry in payload["conditions"]["ids"]:
                counts[(entry["transaction"], int(entry["queue"]))] += 1
        return counts

    def effective(self, kind: str) -> Counter[tuple[str, int]]:
        """Updates of ``kind`` that changed a copy still in the queue, per copy."""
        with self._lock:
            return Counter((tx, q) for tx, q, k in self.effects if k == kind)


WORKER = {
    "concurrency": 16,
    "backoff_base_seconds": 0.05,
    "backoff_max_seconds": 0.5,
    "max_attempts": 100,  # an outage must never use up a job's attempts in these tests
    # In-process stacks never lose a worker; a lease shorter than a job can take on a loaded
    # machine would let a second thread re-run it (a duplicate mail, not a lost one). The
    # SIGKILL tests set their own short lease.
    "lease_seconds": 60,
}
NODE_TIMEOUT = 0.5


def build_fault_stack(database_url: str, simulator: SimulatorServer, smtp: CaptureServer, /, **sections: Any) -> Stack:
    """The service in this process with the [worker] settings of issue 4 and limits out of the way."""
    return build_stack(
        database_url, simulator, smtp, testing=False, node_timeout=NODE_TIMEOUT,
        worker={**WORKER, **sections.pop("worker", {})},
        limits={"notifications_per_recipient_per_day": 1_000_000, "reports_per_ip_per_hour": 1_000_000},
        **sections,
    )  # fmt: skip


def start_simulator(**kwargs: Any) -> SimulatorServer:
    return SimulatorServer(FaultSim(users={SIM_USER: SIM_PASSWORD}, **kwargs)).start()


# -- backlog -------------------------------------------------------------------------------


@dataclass
class Backlog:
    transactions: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)

    def copies(self, recipients: int) -> set[tuple[str, int]]:
        return {(tx, q) for tx in self.transactions for q in range(1, recipients + 1)}


def insert_backlog(db: Database, sim: HalonSimulator, n: int, recipients: int = 2) -> Backlog:
    """``n`` reports exactly as Flow.submit_report leaves them (report, 'reported' event,
    locate job; NOTIFY on PostgreSQL), in bulk, with their messages held on the simulator."""
    backlog = Backlog()
    now = datetime.now(UTC)
    for start in range(0, n, 500):
        count = min(500, n - start)
        txs = []
        for _ in range(count):
            tag = uuid.uuid4().hex[:12]
            rcpts = [f"r{i}-{tag}@example.test" for i in range(recipients)]
            txs.append(sim.add_message("anna@partner.example", rcpts, f"Fault test {tag}", score=90.0))
            backlog.addresses += rcpts
        backlog.transactions += txs
        with db.session() as session:
            rows = [
                {"node": NODE, "message_id": tx, "link_issued_at": now.replace(microsecond=0), "state": "pending",
                 "comment": "We met at the fair.", "sender_ip": "192.0.2.1", "created_at": now, "updated_at": now}
                for tx in txs
            ]  # fmt: skip
            ids = list(session.scalars(insert(Report).returning(Report.id, sort_by_parameter_order=True), rows))
            session.execute(
                insert(Event),
                [{"actor": "sender:192.0.2.1", "action": "reported", "report_id": i, "detail": ""} for i in ids],
            )
            session.execute(
                insert(Job),
                [{"kind": "locate", "ref_id": i, "state": "queued", "attempts": 0, "run_after": now} for i in ids],
            )
            if db.is_postgres:
                session.execute(text(f"NOTIFY {WAKE_CHANNEL}"))
            session.commit()
    return backlog


def request_all_releases(db: Database) -> int:
    """Every notified recipient asks for its release (as Flow.request_release leaves it), in bulk."""
    now = datetime.now(UTC)
    with db.session() as session:
        ids = list(session.scalars(select(Recipient.id).where(Recipient.state == "notified")))
        session.execute(
            Recipient.__table__.update()
            .where(Recipient.id.in_(ids))
            .values(state="release_requested", release_requested_at=now)
        )
        session.execute(
            insert(Job),
            [{"kind": "release", "ref_id": i, "state": "queued", "attempts": 0, "run_after": now} for i in ids],
        )
        if db.is_postgres:
            session.execute(text(f"NOTIFY {WAKE_CHANNEL}"))
        session.commit()
    return len(ids)


def states(db: Database, column: Any) -> dict[str, int]:
    with db.session() as session:
        return {k: v for k, v in session.execute(select(column, func.count()).group_by(column)).all()}


def report_states(db: Database) -> dict[str, int]:
    return states(db, Report.state)


def recipient_states(db: Database) -> dict[str, int]:
    return states(db, Recipient.state)


def job_states(db: Database) -> dict[str, int]:
    return states(db, Job.state)


def jobs_run_twice(db: Database, kinds: Sequence[str] = ("locate", "notify", "release")) -> int:
    """Jobs claimed more than once (a retry or a re-claim after a lease ran out)."""
    with db.session() as session:
        return int(session.scalar(select(func.count()).where(Job.kind.in_(kinds), Job.attempts > 1)) or 0)


@dataclass(frozen=True)
class MailCount:
    total: int
    duplicates: int  # extra deliveries of the same (Message-ID, recipient)
    recipients_mailed_twice: int  # recipients with more than one mail, whatever the Message-ID
    recipients_with_two_ids: int  # recipients who got two different Message-IDs (undetectable dupes)
    missing: int


def count_mail(servers: Sequence[CaptureServer], addresses: Sequence[str]) -> MailCount:
    pairs: Counter[tuple[str, str]] = Counter()
    per_rcpt: Counter[str] = Counter()
    ids: dict[str, set[str]] = {}
    for server in servers:
        for captured in server.messages():
            mid = str(captured.message.get("Message-ID", ""))
            for rcpt in captured.rcpt_tos:
                pairs[(mid, rcpt.lower())] += 1
                per_rcpt[rcpt.lower()] += 1
                ids.setdefault(rcpt.lower(), set()).add(mid)
    wanted = {a.lower() for a in addresses}
    return MailCount(
        total=sum(pairs.values()),
        duplicates=sum(c - 1 for c in pairs.values()),
        recipients_mailed_twice=sum(1 for a in wanted if per_rcpt[a] > 1),
        recipients_with_two_ids=sum(1 for a in wanted if len(ids.get(a, ())) > 1),
        missing=sum(1 for a in wanted if per_rcpt[a] == 0),
    )


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll until ``predicate()``; returns the seconds waited; fails the test on timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def figures(test: str, db: str, rows: Sequence[tuple[str, Any]]) -> None:
    """Print a test's figures as a table and keep them for the session summary."""
    width = max(len(name) for name, _ in rows)
    print(f"\n== figures: {test} [{db}]")
    for name, value in rows:
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"   {name.ljust(width)}  {shown}")
        FIGURES.append((test, db, name, value))


# -- processes -----------------------------------------------------------------------------


def write_config(
    path: Path, database_url: str, simulator: SimulatorServer, smtp_port: int, *, worker: dict[str, Any],
    node_timeout: float = 2.0,
) -> Path:  # fmt: skip
    """A production-shaped TOML config for `flask --app app worker`."""
    worker_lines = "".join(f"{k} = {v}\n" for k, v in worker.items())
    path.write_text(
        f"""
[app]
public_url = "https://release.example.test"
secret_key = "faults-secret-0123456789abcdefghijklmn"
[database]
url = "{database_url}"
[links]
keys = ["faults-link-key-0123456789abcdef"]
[captcha]
provider = "altcha"
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Release <release@example.test>"
timeout_seconds = 5.0
[limits]
notifications_per_recipient_per_day = 1000000
[worker]
{worker_lines}
[[nodes]]
name = "{NODE}"
api_url = "{simulator.url}"
username = "{SIM_USER}"
password = "{SIM_PASSWORD}"
timeout_seconds = {node_timeout}
"""
    )
    return path


@dataclass
class WorkerProc:
    """One `flask --app app worker` process we started; only ever signalled by its own pid."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    log: TextIO

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def tail(self, chars: int = 3000) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def worker_processes(config: Path, logdir: Path) -> Iterator[Callable[[], WorkerProc]]:
    """Yields ``spawn()``: start one more worker process and wait until it runs."""
    started: list[WorkerProc] = []
    env = {**os.environ, "RELEASE_CONFIG": str(config), "PYTHONPATH": str(ROOT)}

    def spawn() -> WorkerProc:
        log_path = logdir / f"worker-{len(started)}.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        popen = subprocess.Popen(
            [str(BIN / "flask"), "--app", "app", "worker"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        proc = WorkerProc(popen, log_path, log)
        started.append(proc)
        deadline = time.monotonic() + 30
        while "worker started" not in log_path.read_text(errors="replace"):
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{proc.tail()}")
            time.sleep(0.02)
        return proc

    try:
        yield spawn
    finally:
        for proc in started:
            proc.stop()
