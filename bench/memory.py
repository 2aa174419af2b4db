"""Memory: RSS of the gunicorn web workers after load, and of a worker process after backlogs.

One stack: `gunicorn app:app` (2 workers) and one `flask --app app worker` process, PostgreSQL
(or SQLite), the Halon simulator (50 ms round trip) and the capture SMTP server. Measured:

- web: RSS of each gunicorn web worker (not the master) after wrk on the report page and the
  status endpoint (10 s each), then again after a second identical round;
- worker: RSS of the worker process after it drained a backlog of N reports (2 recipients
  each), then after a second backlog of the same size. Growth between the rounds is the leak
  signal; the bar is < 100 MB each.

The worker runs at the service's default `[worker] concurrency` unless `--concurrency` says
otherwise: each batch in flight holds its jobs, mails and gateway answers, so RSS grows with it.
It gets the environment release-worker.service gives it (MALLOC_ARENA_MAX). Needs wrk.

    .venv/bin/python bench/memory.py [--reports 5000] [--db postgres] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import (  # noqa: E402
    add_message,
    children,
    database,
    free_port,
    gear,
    header,
    insert_backlog,
    report_link,
    require_tool,
    rss_mb,
    say,
    stack,
    table,
    watch_backlog,
    workdir,
    worker_malloc_env,
    write_config,
)
from web import report_once, wrk  # noqa: E402

from release.config import WorkerSettings  # noqa: E402

BAR_MB = 100.0
GROWTH_MB = 5.0  # "meaningful" growth between two identical rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=5000, help="backlog size per round (default 5000)")
    parser.add_argument("--db", default="postgres", choices=("postgres", "sqlite"))
    default = WorkerSettings().concurrency
    parser.add_argument("--concurrency", type=int, default=default, help=f"[worker] concurrency (default {default})")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per target and round")
    parser.add_argument("--timeout", type=float, default=900, help="cap per backlog round, seconds")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    require_tool("wrk", "install it with your package manager (Debian, Ubuntu: `apt-get install wrk`)")
    header(f"memory: web workers after wrk, worker after 2 x {args.reports} reports ({args.db}, "
           f"concurrency {args.concurrency})")  # fmt: skip
    malloc = " ".join(f"{k}={v}" for k, v in worker_malloc_env().items()) or "none"
    say(f"   worker environment as release-worker.service sets it: {malloc}")
    rows = []
    with workdir(args.keep) as tmp, gear(0.05) as g, database(args.db, tmp) as url:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config = write_config(tmp / "memory.toml", url, base, g, worker={"concurrency": args.concurrency})
        with stack(config, tmp) as s:
            web = s.gunicorn(port, workers=2)
            worker = s.worker()
            web_pids = children(web.pid)
            fresh_tx, _ = add_message(g.sim)
            reported_tx, _ = add_message(g.sim)
            reported = report_link(base, reported_tx)
            report_once(base, reported)
            targets = [report_link(base, fresh_tx), reported.replace("/report?", "/report/status?")]
            web_rss = {pid: [rss_mb(pid)[0]] for pid in web_pids}
            for _round in range(2):
                for url_ in targets:
                    wrk(url_, args.duration)
                for pid in web_pids:
                    web_rss[pid].append(rss_mb(pid)[0])
            for pid, values in web_rss.items():
                rows.append((f"gunicorn web worker {pid}", values[0], values[1], values[2], rss_mb(pid)[1],
                             values[2] - values[1]))  # fmt: skip
            worker_rss = [rss_mb(worker.pid)[0]]
            for round_ in range(2):
                started = time.perf_counter()
                insert_backlog(url, g.sim, args.reports)
                progress = watch_backlog(url, args.reports * (round_ + 1) + 1, started, args.timeout)
                worker_rss.append(rss_mb(worker.pid)[0])
                say(f"   backlog {round_ + 1}: {progress.finished - 1 - round_ * args.reports}/{args.reports} final "
                    f"in {progress.elapsed:.0f} s, worker RSS {worker_rss[-1]:.1f} MB")  # fmt: skip
            rows.append((f"worker process {worker.pid}", worker_rss[0], worker_rss[1], worker_rss[2],
                         rss_mb(worker.pid)[1], worker_rss[2] - worker_rss[1]))  # fmt: skip
    say()
    verdicts = []
    for row in rows:
        ok = row[3] < BAR_MB and row[5] < GROWTH_MB
        verdicts.append((*row, "MET" if ok else "MISSED"))
    say(table(("process", "RSS at start MB", "after round 1 MB", "after round 2 MB", "peak MB",
               "growth round 2 MB", f"bar < {BAR_MB:.0f} MB, growth < {GROWTH_MB:.0f} MB"), verdicts))  # fmt: skip
    say("(web rounds: wrk on the report page and the status endpoint; worker rounds: one backlog each; "
        "the one report submitted for the status endpoint counts in the worker's first round)")  # fmt: skip


if __name__ == "__main__":
    main()
