"""A configuration mistake stops every entry point with one line naming the key and a non-zero
status, never a traceback: real processes, started the way the docs start them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BROKEN = """
[app]
public_url = "https://release.example.test"
secret_key = "a-long-enough-secret-for-this-test-0123456789"
pubic_url = "https://typo.example.test"
"""


def line(config: Path) -> str:
    """The one line: the mistake, named with the file it is in."""
    return f"configuration error: {config}: app.pubic_url: unknown key"


GUNICORN = [str(BIN / "gunicorn"), "--bind", "127.0.0.1:0", "--no-control-socket", "--graceful-timeout", "5"]

ENTRY_POINTS = {
    "flask db upgrade": [str(BIN / "flask"), "--app", "app", "db", "upgrade"],
    "flask worker": [str(BIN / "flask"), "--app", "app", "worker"],
    "flask check-config": [str(BIN / "flask"), "--app", "app", "check-config"],
    "flask sign-link": [str(BIN / "flask"), "--app", "app", "sign-link", "--node", "mx1", "--msgid", "m1"],
    "python app.py": [sys.executable, "app.py"],
    "gunicorn app:app": [*GUNICORN, "app:app"],
    "gunicorn with the hooks": [*GUNICORN, "-c", "python:release.gunicorn_hooks", "app:app"],
}


def start(command: list[str], config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELEASE_", "FLASK_"))}
    env |= {"RELEASE_CONFIG": str(config), "PYTHONDONTWRITEBYTECODE": "1"}
    # The timeout bounds a server that would keep restarting workers instead of stopping.
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_a_config_mistake_is_one_line_and_a_failed_start(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(BROKEN)
    done = start(command, config)
    assert done.returncode == 4, done.stderr  # 4 is what stops gunicorn's master
    assert "Traceback" not in done.stderr
    assert done.stderr.count(line(config)) == 1, done.stderr
    if not command[0].endswith("gunicorn"):
        assert done.stderr.strip() == line(config)  # gunicorn adds its own start and stop lines
    assert done.stdout == ""


def test_a_missing_config_file_is_one_line_too(tmp_path: Path) -> None:
    done = start(ENTRY_POINTS["flask db upgrade"], tmp_path / "nowhere.toml")
    assert done.returncode == 4
    (line,) = done.stderr.splitlines()
    assert line.startswith("configuration error:") and "RELEASE_CONFIG" in line and "does not exist" in line


def test_the_hooks_stop_gunicorn_before_it_forks_a_worker(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(BROKEN)
    done = start([*GUNICORN, "--workers", "3", "-c", "python:release.gunicorn_hooks", "app:app"], config)
    assert done.returncode == 4
    assert "Booting worker" not in done.stderr and done.stderr.count(line(config)) == 1, done.stderr
