"""CPU time per request, in this process: the report-link page and the status endpoint
against the bare Flask app, called through Flask's test client (no network, no gunicorn).

The gunicorn figures of bench/web.py move with the machine's load; CPU time per request
measured here hardly does, so it is the day-to-day measure. Database time the process spends
waiting (PostgreSQL's own CPU) is not counted: ``wall ms`` shows it.

    .venv/bin/python bench/request_cpu.py [--db postgres|sqlite] [--requests 2000] [--profile page]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import add_message, database, gear, header, report_link, say, table, workdir, write_config  # noqa: E402
from flask import Flask  # noqa: E402

from release import create_app  # noqa: E402
from release.config import load_settings  # noqa: E402


def cost(get: Callable[[], int], requests: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of ``get``, after a warm-up; every answer must be a 200."""
    for _ in range(50):
        if get() != 200:
            raise RuntimeError("warm-up request did not answer 200")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        if get() != 200:
            raise RuntimeError("request did not answer 200")
    return (time.process_time() - cpu) * 1000 / requests, (time.perf_counter() - wall) * 1000 / requests


def getter(app: Flask, url: str) -> Callable[[], int]:
    """A client fetching ``url`` without cookies: each request is a first visit (a sender
    opening the link from the reject message), as with wrk in bench/web.py."""
    client = app.test_client(use_cookies=False)
    path = url.split("://", 1)[-1].split("/", 1)[-1]
    return lambda: client.get("/" + path).status_code


def profile(target: Callable[[], int], requests: int) -> None:
    """Where the time of ``requests`` calls goes: pyinstrument when installed (sampling, little
    distortion; `.venv/bin/pip install pyinstrument`), else cProfile."""
    cost(target, 50)
    try:
        from pyinstrument import Profiler
    except ImportError:
        profiler = cProfile.Profile()
        profiler.enable()
        cost(target, requests)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        return
    sampler = Profiler(interval=0.0002)
    sampler.start()
    cost(target, requests)
    sampler.stop()
    say(sampler.output_text(show_all=bool(os.environ.get("PROFILE_ALL")), color=False, short_mode=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="postgres", choices=("postgres", "sqlite"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per target (default 2)")
    parser.add_argument("--profile", choices=("page", "status"), help="cProfile one target, print the top")
    args = parser.parse_args()
    header(f"request_cpu: {args.requests} requests per target and round, test client, database {args.db}")
    from hello_app import app as hello

    with workdir() as tmp, gear(0.0) as g, database(args.db, tmp) as url:
        base = "http://127.0.0.1:9"
        config = write_config(tmp / "cpu.toml", url, base, g)
        app = create_app(load_settings(str(config)))
        fresh, reported = (report_link(base, add_message(g.sim)[0]) for _ in range(2))
        submit = app.test_client()
        report_once_in_process(submit, reported)
        targets = {
            "bare": getter(hello, "/"),
            "page": getter(app, fresh),
            "status": getter(app, reported.replace("/report?", "/report/status?")),
        }
        if args.profile:
            target = targets[args.profile]
            profile(target, args.requests)
            return
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, target in targets.items():
                figures[name].append(cost(target, args.requests))
        app.extensions["release"].db.dispose()
    bare = min(c for c, _ in figures["bare"])
    rows = []
    for name, runs in figures.items():
        best = min(c for c, _ in runs)
        rows.append((name, ", ".join(f"{c:.3f}" for c, _ in runs), ", ".join(f"{w:.3f}" for _, w in runs),
                     f"{best / bare:.1f}x"))  # fmt: skip
    say(table(("target", "CPU ms per request (rounds)", "wall ms per request", "best CPU vs bare"), rows))


def report_once_in_process(client: object, link: str) -> None:
    """Submit one report through the test client (form, CSRF, ALTCHA), as a sender would."""
    from _stack import CSRF_RE

    from tests.support.altcha import solve_altcha

    path = "/" + link.split("://", 1)[-1].split("/", 1)[-1]
    page = client.get(path)  # type: ignore[attr-defined]
    csrf = CSRF_RE.search(page.get_data(as_text=True))
    if not csrf:
        raise RuntimeError(f"no form on the report page: {page.status_code}")
    challenge = client.get("/captcha/altcha-challenge").get_json()  # type: ignore[attr-defined]
    form = {"csrf_token": csrf.group(1), "comment": "Bench.", "altcha": solve_altcha(challenge)}
    posted = client.post(path, data=form)  # type: ignore[attr-defined]
    if posted.status_code != 303:
        raise RuntimeError(f"submit answered {posted.status_code}")


if __name__ == "__main__":
    main()
