"""Multiprocess mode: timings taken in one process (the worker) show in another's scrape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

OBSERVE = """
from release.ops.metrics import GATEWAY_ERRORS, GATEWAY_SECONDS
GATEWAY_SECONDS.labels("mx1", "release").observe(0.2)
GATEWAY_ERRORS.labels("mx1", "release", "unavailable").inc()
"""
SCRAPE = """
import sys
from prometheus_client import CollectorRegistry
from release.ops.metrics import exposition
sys.stdout.write(exposition(CollectorRegistry()).decode())
"""


def run(code: str, directory: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_other_processes_calls_are_summed(tmp_path: Path) -> None:
    run(OBSERVE, tmp_path)
    run(OBSERVE, tmp_path)
    text = run(SCRAPE, tmp_path)
    assert 'release_gateway_request_seconds_count{node="mx1",operation="release"} 2.0' in text
    assert 'release_gateway_errors_total{kind="unavailable",node="mx1",operation="release"} 2.0' in text
