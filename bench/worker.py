"""Worker throughput: a backlog of reports drained by real `flask --app app worker` processes.

For each run: a fresh database, a backlog of N reports (2 recipients each) inserted as
Flow.submit_report leaves them (report row, 'reported' event, queued locate job), the Halon
simulator with a 50 ms round trip per API call and the capture SMTP server in this process.
Then K worker processes start with `[worker] concurrency = C` and the benchmark counts the
reports that are final (notified) until the backlog is gone or the run's time cap is hit.

Rates: "drain" is reports final / seconds since the workers were up (the bar's figure: the
whole backlog, start-up included); "steady" is reports/s between 10 % and 90 % of the backlog
final; "jobs/s" counts every finished job (a report is one locate job plus one notify job per
recipient, so jobs/s / 3 is the capacity in reports/s even when a run hits its time cap before
reports complete: the queue is FIFO by run_after, so all locates run before any notify). CPU columns say
where the machine's 2 cores went (worker processes, this process = simulator + SMTP server,
and the whole machine including PostgreSQL).

    .venv/bin/python bench/worker.py [--reports 5000] [--runs postgres:1:8,postgres:2:32,...]
        [--timeout 240] [--profile]      # --profile: py-spy on the first worker of 1-worker runs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import (  # noqa: E402
    cpu_seconds,
    database,
    gear,
    header,
    insert_backlog,
    job_states,
    machine_ticks,
    own_cpu_seconds,
    py_spy_record,
    py_spy_summary,
    py_spy_wait,
    rss_mb,
    say,
    stack,
    table,
    watch_backlog,
    workdir,
    write_config,
)

from release.db.engine import Database  # noqa: E402

SIM_RTT = 0.05
BAR = 100.0
DEFAULT_RUNS = "postgres:1:8,postgres:1:16,postgres:2:8,postgres:2:16,sqlite:1:8,sqlite:1:16"


def run(kind: str, workers: int, concurrency: int, reports: int, timeout: float, profile: bool, tmp: Path) -> dict:
    name = f"{kind}-{workers}w-c{concurrency}"
    with gear(SIM_RTT) as g, database(kind, tmp) as url:
        config = write_config(tmp / f"{name}.toml", url, "https://release.example.test", g,
                              worker={"concurrency": concurrency})  # fmt: skip
        loaded = time.perf_counter()
        insert_backlog(url, g.sim, reports)
        say(f"   {name}: backlog of {reports} inserted in {time.perf_counter() - loaded:.1f} s")
        with stack(config, tmp) as s:
            procs = [s.worker() for _ in range(workers)]
            started = time.perf_counter()
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            own0, ticks0 = own_cpu_seconds(), machine_ticks()
            spy = None
            if profile and workers == 1:
                spy = py_spy_record(procs[0].pid, tmp / f"{name}.pyspy.txt", min(timeout, 60))
            progress = watch_backlog(url, reports, started, timeout)
            cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
            own, ticks1 = own_cpu_seconds() - own0, machine_ticks()
            rss = [rss_mb(p.pid) for p in procs]
            py_spy_wait(spy)
            crashed = [p.log_tail() for p in procs if p.popen.poll() is not None]
            if crashed:
                raise RuntimeError(f"a worker exited:\n{crashed[0]}")
        db = Database(url)
        try:
            jobs = job_states(db)
        finally:
            db.dispose()
        mails = g.mailbox.count
    busy = (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1])
    result: dict[str, Any] = {
        "name": name, "kind": kind, "workers": workers, "concurrency": concurrency, "progress": progress,
        "worker_cpu": sum(cpu), "own_cpu": own, "machine_busy": busy, "rss": rss, "jobs": jobs, "mails": mails,
    }  # fmt: skip
    if spy is not None:
        result["profile"] = py_spy_summary(tmp / f"{name}.pyspy.txt")
    p = progress
    say(f"   {name}: {p.finished}/{reports} final in {p.elapsed:.1f} s, steady {p.rate_between(0.1, 0.9):.1f}/s, "
        f"{p.job_rate:.1f} jobs/s, states {p.states}, jobs {jobs}, mails {mails}")  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=5000, help="backlog size (default 5000)")
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated database:workers:concurrency")
    parser.add_argument("--timeout", type=float, default=240, help="time cap per run, seconds (default 240)")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker in 1-worker runs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, profiles)")
    args = parser.parse_args()
    header(f"worker: backlog of {args.reports} reports x 2 recipients, simulator RTT {SIM_RTT * 1000:.0f} ms")
    results = []
    with workdir(args.keep) as tmp:
        for spec in args.runs.split(","):
            kind, workers, concurrency = spec.split(":")
            results.append(run(kind, int(workers), int(concurrency), args.reports, args.timeout, args.profile, tmp))
    rows = []
    for r in results:
        p = r["progress"]
        steady = p.rate_between(0.1, 0.9)
        verdict = ""
        if r["workers"] == 1:
            verdict = "MET" if p.overall >= BAR else "MISSED"
        cpu_per_job = 1000 * r["worker_cpu"] / max(1, p.jobs_done)
        rows.append((r["kind"], r["workers"], r["concurrency"], f"{p.finished}/{p.total}", p.elapsed, p.overall,
                     steady, p.job_rate, p.job_rate / 3, cpu_per_job, r["worker_cpu"] / p.elapsed * 100,
                     r["own_cpu"] / p.elapsed * 100, r["machine_busy"] * 200, max(x[0] for x in r["rss"]),
                     verdict))  # fmt: skip
    say()
    say(table(("db", "workers", "concurrency", "reports final", "seconds", "drain rep/s", "steady rep/s",
               "jobs/s", "jobs/s / 3", "worker CPU ms/job", "workers CPU %", "bench proc CPU %",
               "machine CPU % (of 200)", "worker RSS MB", f"bar >= {BAR:.0f} rep/s (1 worker)"), rows))  # fmt: skip
    for r in results:
        if "profile" in r:
            say(f"\npy-spy, {r['name']} (first {min(args.timeout, 60):.0f} s of the run):\n{r['profile']}")


if __name__ == "__main__":
    main()
