"""A malformed database or Redis URL is a configuration mistake like any other:
one line naming the key or variable, exit 4, never a traceback, never the password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PASSWORD = "S3cretDbPw-7c1e9a2b"
CONFIG = """
[app]
public_url = "https://release.example.test"
secret_key = "a-long-enough-secret-for-this-test-0123456789"
[links]
keys = ["another-long-enough-link-key-0123456789"]
[captcha]
provider = "altcha"
[[nodes]]
name = "mx1"
api_url = "https://127.0.0.1:9"
password = "node-password-0123456789"
"""

BROKEN = {
    "database port not a number": {
        "RELEASE_DATABASE__URL": f"postgresql+psycopg://release:{PASSWORD}@db.example.com:54x2/release"
    },
    "database URL missing its colon": {
        "RELEASE_DATABASE__URL": f"postgresql+psycopg//release:{PASSWORD}@db.example.com/release"
    },
    "redis port not a number": {"RELEASE_LIMITS__STORAGE_URL": f"redis://:{PASSWORD}@127.0.0.1:6x79/0"},
}


@pytest.mark.parametrize("variables", BROKEN.values(), ids=BROKEN.keys())
def test_a_malformed_url_is_one_line_exit_4(tmp_path: Path, variables: dict[str, str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELEASE_", "FLASK_"))}
    env |= {"RELEASE_CONFIG": str(config), "PYTHONDONTWRITEBYTECODE": "1"}
    env.setdefault("RELEASE_DATABASE__URL", f"sqlite:///{tmp_path / 'x.sqlite3'}")
    env |= variables
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "app", "check-config"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert PASSWORD not in done.stdout + done.stderr  # held up: the traceback does not quote it
    assert "Traceback" not in done.stderr, done.stderr[-600:]
    assert done.returncode == 4
    assert done.stderr.startswith("configuration error: ") and next(iter(variables)) in done.stderr
