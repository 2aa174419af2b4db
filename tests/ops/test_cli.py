"""Operator commands through Flask's CLI runner, against real parts (db upgrade, sign-link,
create-admin, the config checks at start-up)."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from release import create_app
from release.config import ConfigError, settings_from_mapping
from release.core import links
from release.db.models import AdminUser, AuditEntry
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from release.paths import MIGRATIONS
from tests.support.config import make_config
from tests.support.console import Console

# The newest migration's revision id is its file name's number (0001_initial_schema.py, ...).
HEAD = sorted(p.name for p in (MIGRATIONS / "versions").glob("[0-9]*.py"))[-1].split("_")[0]


def app_for(tmp_path: Path, simulator: SimulatorServer, smtp_port: int, **sections: dict[str, object]):
    settings = settings_from_mapping(
        make_config(f"sqlite:///{tmp_path / 'cli.sqlite3'}", simulator, smtp_port, **sections)
    )
    return create_app(settings)


def test_db_upgrade_then_sign_link_prints_a_link_the_service_accepts(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    app = app_for(tmp_path, simulator, smtp_server.port)
    runner = app.test_cli_runner()
    assert f"created schema at revision {HEAD}" in runner.invoke(args=["db", "upgrade"]).output
    result = runner.invoke(args=["sign-link", "--node", "mx1", "--msgid", "abc-123", "--time", "1764000000"])
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    settings = app.extensions["release"].settings
    assert url.startswith("https://release.example.test/report?")
    assert query["s"] == links.sign(settings.links.keys[0], "mx1", "abc-123", 1764000000)
    client = app.test_client()
    page = client.get(url.replace("https://release.example.test", ""))
    assert page.status_code == 410  # 1764000000 is long past: the link is genuine but expired


def test_db_upgrade_says_what_it_did(database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer) -> None:
    app = create_app(settings_from_mapping(make_config(database_url, simulator, smtp_server.port)))
    runner = app.test_cli_runner()
    previous = f"{int(HEAD) - 2:04d}"
    try:
        steps = [
            (["db", "upgrade"], f"created schema at revision {HEAD}"),
            (["db", "upgrade"], f"already at revision {HEAD}"),
            (["db", "downgrade", previous], f"downgraded from {HEAD} to {previous}"),
            (["db", "upgrade"], f"upgraded from {previous} to {HEAD}"),
            (["db", "downgrade", "base"], f"downgraded from {HEAD} to an empty database (base)"),
        ]
        for args, said in steps:
            result = runner.invoke(args=args)
            assert (result.exit_code, result.output) == (0, said + "\n"), args
    finally:
        app.extensions["release"].db.dispose()


def test_sign_link_refuses_unknown_node(tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer) -> None:
    runner = app_for(tmp_path, simulator, smtp_server.port).test_cli_runner()
    result = runner.invoke(args=["sign-link", "--node", "nope", "--msgid", "x"])
    assert result.exit_code != 0 and "unknown node" in result.output


def test_check_config_reaches_everything(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    runner = app_for(tmp_path, simulator, smtp_server.port).test_cli_runner()
    result = runner.invoke(args=["check-config"])
    assert result.exit_code == 0, result.output
    assert "database     ok" in result.output and "node mx1" in result.output and "smtp         ok" in result.output


def test_check_config_fails_and_says_what(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    port = smtp_server.port
    smtp_server.stop()
    bad_node = [{"name": "mx1", "api_url": simulator.url, "username": "release", "password": "wrong-password-42"}]
    settings = settings_from_mapping(
        {**make_config(f"sqlite:///{tmp_path / 'x.sqlite3'}", simulator, port), "nodes": bad_node}
    )
    app = create_app(settings)
    result = app.test_cli_runner().invoke(args=["check-config"])
    assert result.exit_code == 1
    assert "node mx1     FAIL" in result.output and "smtp         FAIL" in result.output
    assert "wrong-password-42" not in result.output


def test_create_app_without_config_explains(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RELEASE_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        create_app()


def test_placeholder_secret_stops_start_up_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, simulator: SimulatorServer
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[app]
secret_key = "change-me"
[links]
keys = ["{secrets.token_urlsafe(20)}"]
[captcha]
provider = "altcha"
[[nodes]]
name = "mx1"
api_url = "{simulator.url}"
password = "p4ssw0rd-long-enough"
"""
    )
    monkeypatch.setenv("RELEASE_CONFIG", str(config))
    with pytest.raises(ConfigError) as caught:
        create_app()
    assert caught.value.key == "app.secret_key"


def test_create_admin_from_prompt_and_stdin(console: Console) -> None:
    runner = console.stack.app.test_cli_runner()
    prompted = runner.invoke(args=["create-admin", "olga"], input="a long enough pass\na long enough pass\n")
    assert prompted.exit_code == 0, prompted.output
    assert "created admin account olga" in prompted.output
    assert "a long enough pass" not in prompted.output  # hidden input
    piped = runner.invoke(args=["create-admin", "paul", "--role", "viewer", "--password-stdin"],
                          input="another long password\n")  # fmt: skip
    assert piped.exit_code == 0, piped.output
    with console.stack.services.db.session() as session:
        users = {u.username: u.role for u in session.scalars(select(AdminUser))}
        assert users["olga"] == "admin" and users["paul"] == "viewer"
        assert session.scalar(select(AuditEntry).where(AuditEntry.target == "admin:paul")) is not None
    console.login(("paul", "another long password"))


def test_create_admin_refuses_bad_input(console: Console) -> None:
    runner = console.stack.app.test_cli_runner()
    short = runner.invoke(args=["create-admin", "quinn", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    mismatch = runner.invoke(args=["create-admin", "quinn"], input="first password 1\nsecond password 2\n")
    assert mismatch.exit_code != 0
    taken = runner.invoke(args=["create-admin", "alice-admin", "--password-stdin"], input="long enough password\n")
    assert taken.exit_code != 0 and "already exists" in taken.output
    role = runner.invoke(args=["create-admin", "rita", "--role", "root", "--password-stdin"], input="x" * 20 + "\n")
    assert role.exit_code != 0
    with console.stack.services.db.session() as session:
        assert session.scalar(select(AdminUser).where(AdminUser.username == "quinn")) is None
