"""Shared parts of the benchmarks: databases, simulator, SMTP capture, real processes.

Every benchmark runs the service as it runs in production: `gunicorn app:app` and
`flask --app app worker` as separate processes, configured by a TOML file, against SQLite or
a private PostgreSQL schema. The Halon simulator and the capture SMTP server run in the
benchmark process (loopback only). Nothing here is timed by itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import psycopg
import requests
from sqlalchemy import func, insert, select, text

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from release.core.links import build_report_url  # noqa: E402
from release.db import migrate  # noqa: E402
from release.db.engine import Database  # noqa: E402
from release.db.models import Event, Job, Report  # noqa: E402
from release.devtools.mailcapture import CaptureServer, free_port  # noqa: E402
from release.devtools.simulator import HalonSimulator, Ids, SimItem, SimulatorServer  # noqa: E402
from release.jobs.wake import CHANNEL as WAKE_CHANNEL  # noqa: E402

BIN = Path(sys.executable).parent
WORKER_UNIT = ROOT / "docs" / "deploy" / "release-worker.service"
PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Fresh per run, like a production config (real random secrets, not demo ones).
SIM_USER, SIM_PASSWORD = "release", secrets.token_urlsafe(16)
SIM_API_KEY = secrets.token_urlsafe(24)
# Which Halon generation the simulator plays (the node's type in the config): halon6 | halon5.
GATEWAY = os.environ.get("BENCH_GATEWAY", "halon6")
LINK_KEY = secrets.token_urlsafe(24)
SECRET_KEY = secrets.token_urlsafe(32)
NODE = "mx1"
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def say(*parts: Any) -> None:
    """Progress and figures go to stdout, unbuffered."""
    print(*parts, flush=True)  # noqa: T201


# -- machine ---------------------------------------------------------------------------------


def machine() -> str:
    """nproc, CPU model and Python, for the figures' header."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPU ({model}), Python {platform.python_version()}, {platform.platform()}"


def require_tool(name: str, how: str) -> None:
    """Stop with a line saying how to install ``name`` when it is not on PATH (not a traceback
    minutes into a run)."""
    if shutil.which(name) is None:
        sys.exit(f"{name} is needed and not installed: {how}")


def header(title: str) -> None:
    say(f"== {title}")
    say(f"   {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} | {machine()}")
    say(f"   load average before start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds of values in seconds."""
    return {
        "p50": percentile(values, 50) * 1000,
        "p95": percentile(values, 95) * 1000,
        "p99": percentile(values, 99) * 1000,
        "mean": statistics.fmean(values) * 1000 if values else float("nan"),
        "max": max(values) * 1000 if values else float("nan"),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable on a terminal)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


# -- databases -------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """An empty, migrated database of ``kind`` (sqlite | postgres); a PG schema is dropped after."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'bench-{secrets.token_hex(4)}.sqlite3'}"
        _upgrade(url)
        yield url
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    schema = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        url = PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1)
        url = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
        _upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _upgrade(url: str) -> None:
    db = Database(url)
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="release-bench-"))
    try:
        yield path
    finally:
        if keep:
            say(f"   (kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


# -- simulator and mailbox -------------------------------------------------------------------


class IndexedSimulator(HalonSimulator):
    """The Halon simulator with its copies indexed by transaction id.

    The stock simulator scans every copy on every API call, which at 10,000 copies costs the
    benchmark process ~10 ms of CPU per call: that would measure the simulator, not the
    service. Same answers, found through a dict; the request log is kept short.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._by_tx: dict[str, list[SimItem]] = {}
        # transaction -> [(command, time.time() when answered)], when tracking is on
        self.answered: dict[str, list[tuple[str, float]]] | None = None

    def _note(self, command: str, ids: Ids) -> None:
        if self.answered is not None:
            now = time.time()
            for tx, _queue in ids.pairs:
                self.answered.setdefault(tx, []).append((command, now))

    def add_message(self, sender: str, recipients: list[str], subject: str, *args: Any, **kwargs: Any) -> str:
        tx = super().add_message(sender, recipients, subject, *args, **kwargs)
        with self._lock:
            self._by_tx[tx] = [i for i in self._items[-len(recipients) :] if i.transaction == tx]
        return tx

    def _candidates(self, ids: Ids) -> list[SimItem]:
        seen: dict[int, SimItem] = {}
        for tx, _queue in ids.pairs:
            for item in self._by_tx.get(tx, ()):
                seen[id(item)] = item
        return sorted(seen.values(), key=lambda i: (i.transaction, i.queue))

    def _list(self, ids: Ids) -> dict[str, Any]:
        with self._lock:
            saved, self._items = self._items, self._candidates(ids)
            try:
                return super()._list(ids)
            finally:
                self._items = saved
                self._note("find", ids)

    def _update(self, ids: Ids, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            saved, self._items = self._items, self._candidates(ids)
            try:
                return super()._update(ids, payload)
            finally:
                self._items = saved
                self._note("update", ids)

    def _record(self, request: Any) -> Any:
        record = super()._record(request)
        with self._lock:
            if len(self.requests_log) > 1000:
                del self.requests_log[:-100]
        return record


class Mailbox(CaptureServer):
    """Capture SMTP server that timestamps each accepted recipient and can be waited on.

    It does not parse what it accepts: it stands in for a relay, whose cost is not ours to
    measure, and it shares the machine's two cores with the service under test.
    """

    def __init__(self) -> None:
        super().__init__(limit=1)
        self._arrived: dict[str, float] = {}
        self._count = 0
        self._cond = threading.Condition()

    def accept(self, envelope: Any, peer: str) -> None:
        now = time.time()
        with self._cond:
            for rcpt in envelope.rcpt_tos:
                self._arrived[rcpt.lower()] = now
            self._count += 1
            self._cond.notify_all()

    @property
    def count(self) -> int:
        with self._cond:
            return self._count

    def wait_for(self, addresses: Sequence[str], timeout: float) -> list[float] | None:
        """Arrival times (time.time()) of every address, or None on timeout."""
        wanted = [a.lower() for a in addresses]
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if all(a in self._arrived for a in wanted):
                    return [self._arrived.pop(a) for a in wanted]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)


@dataclass
class Gear:
    """Simulator and mailbox running in this process."""

    simulator: SimulatorServer
    mailbox: Mailbox

    @property
    def sim(self) -> IndexedSimulator:
        sim = self.simulator.sim
        assert isinstance(sim, IndexedSimulator)
        return sim


@contextlib.contextmanager
def gear(latency: float) -> Iterator[Gear]:
    """Start the simulator (with ``latency`` per API call) and the capture SMTP server."""
    generation = {"halon6": 6, "halon5": 5}[GATEWAY]
    sim = IndexedSimulator(users={SIM_USER: SIM_PASSWORD}, generation=generation, api_keys=[SIM_API_KEY])
    simulator = SimulatorServer(sim).start()
    simulator.sim.set_latency(latency)
    mailbox = Mailbox().start()
    try:
        yield Gear(simulator, mailbox)
    finally:
        mailbox.stop()
        simulator.stop()


def add_message(sim: HalonSimulator, recipients: int = 2) -> tuple[str, list[str]]:
    """A rejected message held in the short quarantine, with unique recipient addresses."""
    tag = uuid.uuid4().hex[:12]
    rcpts = [f"r{i}-{tag}@example.test" for i in range(recipients)]
    tx = sim.add_message("anna@partner.example", rcpts, f"Bench message {tag}", score=90.0)
    return tx, rcpts


# -- configuration and processes -------------------------------------------------------------


def write_config(
    path: Path,
    database_url: str,
    public_url: str,
    g: Gear,
    *,
    worker: dict[str, Any] | None = None,
) -> Path:
    """A production-shaped TOML config for the processes (limits opened wide for load)."""
    worker_lines = "".join(f"{k} = {_toml(v)}\n" for k, v in (worker or {}).items())
    path.write_text(
        f"""
[app]
public_url = "{public_url}"
secret_key = "{SECRET_KEY}"
# The benchmark acts as many senders behind one proxy (X-Forwarded-For, see sender_headers):
# per-IP limits (reports, ALTCHA challenges) stay on, each simulated sender stays under them.
trusted_proxies = 1
[database]
url = "{database_url}"
[links]
keys = ["{LINK_KEY}"]
[captcha]
provider = "altcha"
altcha_max_number = 1000
[smtp]
host = "127.0.0.1"
port = {g.mailbox.port}
security = "none"
sender = "Release <release@example.test>"
timeout_seconds = 10.0
[limits]
reports_per_ip_per_hour = 1000000
reports_per_message_per_hour = 1000000
notifications_per_recipient_per_day = 1000000
[worker]
{worker_lines}
[[nodes]]
name = "{NODE}"
{_node_lines(g)}timeout_seconds = 10.0
"""
    )
    return path


def _node_lines(g: Gear) -> str:
    """The node's keys for the simulator's generation (credentials, type, quarantines)."""
    node = g.simulator.node_settings(NODE)
    keys = ["api_url", "type", "short_quarantine", "long_quarantine"]
    keys += ["api_key", "halon_version"] if node.type == "halon6" else ["username", "password"]
    return "".join(f"{key} = {_toml(getattr(node, key))}\n" for key in keys)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


_senders = iter(range(1, 1 << 24))


def sender_headers() -> dict[str, str]:
    """A new simulated sender: a distinct client address, as a trusted proxy reports it."""
    n = next(_senders)
    return {"X-Forwarded-For": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}


def report_link(public_url: str, tx: str) -> str:
    return build_report_url(public_url, LINK_KEY, NODE, tx, int(time.time()))


@dataclass
class Proc:
    """One process we started (we only ever signal it by its own pid)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: TextIO

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, chars: int = 3000) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class Stack:
    """Processes started for one scenario; stopped together."""

    config: Path
    logdir: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "RELEASE_CONFIG": str(self.config), "PYTHONPATH": str(ROOT)}

    def _spawn(self, name: str, argv: Sequence[str | Path], env: dict[str, str] | None = None) -> Proc:
        log_path = self.logdir / f"{name}-{len(self.procs)}.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        popen = subprocess.Popen(
            [str(a) for a in argv], cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT
        )
        proc = Proc(name, popen, log_path, log)
        self.procs.append(proc)
        return proc

    def gunicorn(
        self, port: int, app: str = "app:app", *, workers: int = 2, threads: int = 1, pythonpath: str = ""
    ) -> Proc:
        argv: list[str | Path] = [BIN / "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
        if threads > 1:
            argv += ["--threads", str(threads)]
        if pythonpath:
            argv += ["--pythonpath", pythonpath]
        argv += ["--log-level", "warning", app]
        proc = self._spawn("gunicorn", argv)
        wait_http(f"http://127.0.0.1:{port}/healthz" if app == "app:app" else f"http://127.0.0.1:{port}/", proc)
        return proc

    def worker(self) -> Proc:
        """`flask --app app worker` with the malloc settings production's unit gives it."""
        proc = self._spawn("worker", [BIN / "flask", "--app", "app", "worker"], {**self.env, **worker_malloc_env()})
        deadline = time.monotonic() + 30
        while "worker started" not in proc.log_path.read_text(errors="replace"):
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{proc.log_tail()}")
            time.sleep(0.02)
        return proc

    def stop(self, procs: Sequence[Proc] | None = None) -> None:
        targets = list(procs) if procs is not None else list(self.procs)
        for proc in targets:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in targets:
            try:
                proc.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=5)
            proc.log.close()
            self.procs.remove(proc)


def worker_malloc_env() -> dict[str, str]:
    """The glibc malloc variables (MALLOC_*) that release-worker.service sets: read from the
    unit, so the benchmarks' worker runs as production's does."""
    found = {}
    for line in WORKER_UNIT.read_text().splitlines():
        if line.startswith("Environment=MALLOC_"):
            name, _, value = line.removeprefix("Environment=").partition("=")
            found[name] = value
    return found


@contextlib.contextmanager
def stack(config: Path, logdir: Path) -> Iterator[Stack]:
    s = Stack(config, logdir)
    try:
        yield s
    finally:
        s.stop()


def wait_http(url: str, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not answer {url}:\n{proc.log_tail()}")
        time.sleep(0.05)


# -- /proc -----------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's web workers under its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return sorted(found)


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def named_cpu_seconds(name: str) -> float:
    """User + system CPU time so far of every process whose command name is ``name``
    (PostgreSQL's backends, for instance)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                head, _, tail = (entry / "stat").read_text().rpartition(")")
                if head.split("(", 1)[1] == name:
                    fields = tail.split()
                    total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    return time.process_time()


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat, for utilisation over a window."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def py_spy_record(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """Start py-spy on ``pid`` (GIL-holding samples only: where that process's CPU goes)."""
    exe = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(exe).exists():
        say("   (py-spy not installed: `.venv/bin/pip install py-spy`; profiling skipped)")
        return None
    argv = [exe, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "100", "--gil", "--nonblocking",
            "-f", "raw", "-o", str(out)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def py_spy_wait(spy: subprocess.Popen[bytes] | None, timeout: float = 60) -> None:
    if spy is None:
        return
    try:
        spy.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        spy.terminate()
        spy.wait(timeout=10)


def py_spy_summary(raw: Path, top: int = 15) -> str:
    """From py-spy's raw output: top functions by own samples, by inclusive samples (frames
    under 90 % only, so the server's own loop frames do not crowd the list), and the service's
    deepest line in each sample (what in release/ the time was spent under)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    service: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        short = [_short(f) for f in frames]
        own[short[-1]] = own.get(short[-1], 0) + n
        for frame in set(short):
            incl[frame] = incl.get(frame, 0) + n
        ours = [f for f in frames if "(release/" in f or "/release/" in f]
        key = _short(ours[-1], keep_line=True) if ours else "(outside release/: " + short[-1] + ")"
        service[key] = service.get(key, 0) + n
    if not total:
        return "(no samples)"

    def rows(counts: dict[str, int]) -> list[tuple[str, str]]:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(f"{100 * n / total:.1f} %", name) for name, n in best]

    incl = {k: v for k, v in incl.items() if v < 0.9 * total}
    return (
        f"{total} samples while holding the GIL (100 Hz)\n"
        + table(("self", "function"), rows(own))
        + "\n\n"
        + table(("inclusive", "function (frames under 90 %)"), rows(incl))
        + "\n\n"
        + table(("samples", "deepest service line (release/...)"), rows(service))
    )


def _short(frame: str, keep_line: bool = False) -> str:
    """'func (path/to/site-packages/pkg/mod.py:12)' -> 'func (pkg/mod.py)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    if not keep_line:
        where = re.sub(r":\d+$", "", where)  # merge lines of one function
    return f"{name} ({where})"


# -- backlog ---------------------------------------------------------------------------------


def insert_backlog(database_url: str, sim: HalonSimulator, n: int, recipients: int = 2) -> None:
    """``n`` reports as Flow.submit_report leaves them (report + 'reported' event + locate job),
    inserted in bulk, with their messages held on the simulator."""
    now = datetime.now(UTC)
    issued = now.replace(microsecond=0)
    db = Database(database_url)
    try:
        for start in range(0, n, 1000):
            count = min(1000, n - start)
            txs = [add_message(sim, recipients)[0] for _ in range(count)]
            with db.session() as session:
                rows = [
                    {
                        "node": NODE,
                        "message_id": tx,
                        "link_issued_at": issued,
                        "state": "pending",
                        "comment": "We met at the fair.",
                        "sender_ip": "192.0.2.1",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for tx in txs
                ]
                ids = list(session.scalars(insert(Report).returning(Report.id, sort_by_parameter_order=True), rows))
                session.execute(
                    insert(Event),
                    [{"actor": "sender:192.0.2.1", "action": "reported", "report_id": i, "detail": ""} for i in ids],
                )
                session.execute(
                    insert(Job),
                    [{"kind": "locate", "ref_id": i, "state": "queued", "attempts": 0, "run_after": now} for i in ids],
                )
                if db.is_postgres:  # as jobs.enqueue does: wake LISTENing workers on commit
                    session.execute(text(f"NOTIFY {WAKE_CHANNEL}"))
                session.commit()
    finally:
        db.dispose()


def report_states(db: Database) -> dict[str, int]:
    with db.session() as session:
        return dict(session.execute(select(Report.state, func.count()).group_by(Report.state)).all())  # type: ignore[arg-type]


def job_states(db: Database) -> dict[str, int]:
    with db.session() as session:
        return dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())  # type: ignore[arg-type]


@dataclass
class Progress:
    """Reports finished over time while a backlog drains."""

    samples: list[tuple[float, int]]
    total: int
    finished: int
    elapsed: float
    states: dict[str, int]
    jobs_done: int = 0  # jobs finished (done or dead) by the end

    @property
    def job_rate(self) -> float:
        """Jobs finished per second (a report is 1 locate + 1 notify per recipient)."""
        return self.jobs_done / self.elapsed if self.elapsed else float("nan")

    def rate_between(self, lo: float, hi: float) -> float:
        """Reports/s between the moments lo·total and hi·total reports were done."""
        t_lo = next((t for t, done in self.samples if done >= lo * self.total), None)
        t_hi = next((t for t, done in self.samples if done >= hi * self.total), None)
        if t_lo is None or t_hi is None or t_hi <= t_lo:
            return float("nan")
        return (hi - lo) * self.total / (t_hi - t_lo)

    @property
    def overall(self) -> float:
        return self.finished / self.elapsed if self.elapsed else float("nan")


def watch_backlog(database_url: str, total: int, started: float, timeout: float, interval: float = 0.2) -> Progress:
    """Poll report states until ``total`` reports are final (or the timeout), from ``started``."""
    final = ("notified", "not_found", "failed")
    db = Database(database_url)
    samples: list[tuple[float, int]] = []
    try:
        while True:
            states = report_states(db)
            done = sum(states.get(s, 0) for s in final)
            now = time.perf_counter()
            samples.append((now - started, done))
            if done >= total or now - started > timeout:
                jobs = job_states(db)
                return Progress(samples, total, done, now - started, states, jobs.get("done", 0) + jobs.get("dead", 0))
            time.sleep(interval)
    finally:
        db.dispose()


def jitter(upper: float) -> float:
    return random.uniform(0, upper)


__all__ = [
    "CSRF_RE",
    "Gear",
    "Mailbox",
    "Proc",
    "Progress",
    "Stack",
    "add_message",
    "children",
    "cpu_seconds",
    "database",
    "free_port",
    "gear",
    "header",
    "insert_backlog",
    "job_states",
    "jitter",
    "own_cpu_seconds",
    "percentile",
    "report_link",
    "sender_headers",
    "report_states",
    "rss_mb",
    "say",
    "stack",
    "summary_ms",
    "table",
    "watch_backlog",
    "workdir",
    "write_config",
]


def timed_gets(url: str, n: int) -> list[float]:
    """Seconds of each of ``n`` sequential GETs of ``url`` over one keep-alive connection."""
    times = []
    with requests.Session() as http:
        for _ in range(n):
            started = time.perf_counter()
            http.get(url, timeout=30).raise_for_status()
            times.append(time.perf_counter() - started)
    return times


# An rspamd node the benchmarks push to: its password, its [[nodes]] table, the push's headers.
RSPAMD_PUSH_PASSWORD = "bench-push-password-0123456789"  # noqa: S105 - a private loopback run


def rspamd_node_toml(name: str, relay_port: int, **extra: Any) -> str:
    """The ``[[nodes]]`` table of an rspamd node re-injecting into 127.0.0.1:``relay_port``."""
    more = "".join(f"{key} = {_toml(value)}\n" for key, value in extra.items())
    return (f'\n[[nodes]]\nname = "{name}"\ntype = "rspamd"\npush_password = "{RSPAMD_PUSH_PASSWORD}"\n'
            f'relay_host = "127.0.0.1"\nrelay_port = {relay_port}\n{more}')  # fmt: skip


def push_headers(recipients: Sequence[str], symbols: Sequence[tuple[str, float]]) -> dict[str, str]:
    """The headers of an rspamd push (as docs/rspamd's rule sends them) for ``recipients``."""
    return {
        "Content-Type": "message/rfc822",
        "X-Rspamd-from": "anna@partner.example",
        "X-Rspamd-rcpt": json.dumps(list(recipients)),
        "X-Rspamd-qid": "4Qx9Lm2Zb7z9",
        "X-Rspamd-ip": "198.51.100.7",
        "X-Rspamd-score": "15.00",
        "X-Rspamd-symbols": json.dumps([{"name": name, "score": score} for name, score in symbols]),
    }
