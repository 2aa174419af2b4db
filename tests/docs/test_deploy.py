"""The deploy samples work together, as an operator copies them: release.env reads the same
under systemd and a shell, the README's and deployment.md's config examples hold no secret
and load with it, and both systemd units give every process one writable metrics directory."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from release import create_app
from release.config import SECTIONS, ConfigError, load_settings
from release.devtools.mailcapture import CaptureServer, free_port
from release.devtools.simulator import SimulatorServer

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy"
DEPLOYMENT = ROOT / "docs" / "deployment.md"
README = ROOT / "README.md"
ENV_SAMPLE = DEPLOY / "release.env"
UNITS = ("release-web.service", "release-worker.service")
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.DOTALL | re.MULTILINE)
# The one form systemd's EnvironmentFile= parser and a POSIX shell read alike: inside single
# quotes both copy every character up to the next quote, and nothing may follow it.
ASSIGNMENT = re.compile(r"([A-Z][A-Z0-9_]*)='([^'\n]*)'")
# Keys that hold secrets: the docs keep them out of the TOML file, in release.env.
SECRET_KEYS = {
    "app": {"secret_key"},
    "database": {"url"},
    "links": {"keys"},
    "captcha": {"secret"},
    "smtp": {"password"},
    "policy": {"allowlist_keys"},
    "metrics": {"token"},
    "api": {"keys"},
    "nodes": {"password", "api_key", "push_password", "controller_password"},
}


def read_env_file(path: Path) -> dict[str, str]:
    """The file's assignments; any line that systemd and a shell could read differently fails."""
    env = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            match = ASSIGNMENT.fullmatch(line)
            assert match, f"{path.name}:{number}: write NAME='value' (single quotes, nothing after): {line}"
            env[match[1]] = match[2]
    return env


def sourced(path: Path) -> dict[str, str]:
    """What a shell has after `set -a; . file` (the docs' way to run commands by hand)."""
    done = subprocess.run(
        ["sh", "-c", 'set -a; . "$1"; env -0', "sh", str(path)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=10,
    )
    pairs = (item.partition("=") for item in done.stdout.split("\0") if item.startswith("RELEASE_"))
    return {name: value for name, _, value in pairs}


def env_sample() -> dict[str, str]:
    """The secrets file's variables, with a random value wherever the sample leaves it empty."""
    return {name: value or secrets.token_urlsafe(24) for name, value in read_env_file(ENV_SAMPLE).items()}


def first_toml(doc: Path) -> str:
    blocks = TOML_BLOCK.findall(doc.read_text())
    assert blocks, f"{doc.name} has no ```toml sample"
    return str(blocks[0])


def test_env_file_reads_the_same_under_systemd_and_a_shell(tmp_path: Path) -> None:
    sample = read_env_file(ENV_SAMPLE)
    assert sourced(ENV_SAMPLE) == sample
    url = sample["RELEASE_DATABASE__URL"]
    assert "&" in url  # the trap is in the sample, and quoted
    # Without the quotes a shell cuts the line at "&" and the URL is silently unset.
    unquoted = tmp_path / "unquoted.env"
    unquoted.write_text(f"RELEASE_DATABASE__URL={url}\n")
    assert sourced(unquoted).get("RELEASE_DATABASE__URL") != url


def test_env_file_holds_only_secrets_for_one_node() -> None:
    names = set(read_env_file(ENV_SAMPLE))
    assert {n for n in names if n.startswith("RELEASE_NODES__")} == {"RELEASE_NODES__MX1__PASSWORD"}
    for name in names:
        section, *_, key = name.removeprefix("RELEASE_").lower().split("__")
        assert key in SECRET_KEYS[section], f"{name} is not a secret: it belongs in config.toml"


@pytest.mark.parametrize("doc", [README, DEPLOYMENT], ids=lambda p: p.name)
def test_config_example_holds_no_secret_and_loads_with_the_env_file(tmp_path: Path, doc: Path) -> None:
    text = first_toml(doc)
    data = tomllib.loads(text)
    for section, keys in SECRET_KEYS.items():
        tables = data.get(section, []) if section == "nodes" else [data.get(section, {})]
        for table in tables:
            assert not keys & set(table), f"{doc.name}: [{section}] holds a secret; it goes in release.env"
    path = tmp_path / "config.toml"
    path.write_text(text)
    settings = load_settings(path, environ=env_sample())  # raises ConfigError naming a bad key
    assert [n.name for n in settings.nodes] == ["mx1"], "the example and release.env agree on one node"
    assert all(n.password for n in settings.nodes), "every node gets its password from release.env"


def test_the_unfilled_template_names_an_empty_variable(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(first_toml(DEPLOYMENT))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=read_env_file(ENV_SAMPLE))
    assert re.match(r"RELEASE_[A-Z_]+: ", str(caught.value)), str(caught.value)
    assert str(caught.value).endswith("(the variable is set but empty)")


def test_the_second_node_line_alone_names_its_variable(tmp_path: Path) -> None:
    """What the template's last comment warns of: a node's line without its [[nodes]] table."""
    line = next(x for x in ENV_SAMPLE.read_text().splitlines() if x.startswith("# RELEASE_NODES__MX2__"))
    name = line.removeprefix("# ").partition("=")[0]
    path = tmp_path / "config.toml"
    path.write_text(first_toml(DEPLOYMENT))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={**env_sample(), name: secrets.token_urlsafe(24)})
    assert str(caught.value).startswith(f"{name}: names node 'mx2', which the config does not define")


def test_deployment_toml_snippets_load_on_the_sample(tmp_path: Path) -> None:
    raw = TOML_BLOCK.findall(DEPLOYMENT.read_text())
    full = tomllib.loads(raw[0])
    assert set(full) == {*SECTIONS, "nodes"}, "the first sample is the whole file: every section"
    # Each later snippet on top of the first (it shows one section).
    for i, snippet in enumerate(raw[1:]):
        path = tmp_path / f"sample{i}.toml"
        path.write_text(_dump({**full, **tomllib.loads(snippet)}))
        settings = load_settings(path, environ=env_sample())
    assert settings.app.trusted_proxies == 1  # the nginx sample is one proxy in front


def _dump(data: dict[str, Any]) -> str:
    """Minimal TOML writer for the merged samples (strings, numbers, booleans, lists)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    out = []
    for section, table in data.items():
        if section == "nodes":
            continue
        out.append(f"[{section}]")
        out += [f"{k} = {value(v)}" for k, v in table.items()]
    for node in data.get("nodes", []):
        out.append("[[nodes]]")
        out += [f"{k} = {value(v)}" for k, v in node.items()]
    return "\n".join(out) + "\n"


def unit(name: str) -> dict[str, list[str]]:
    """The [Service] settings of a sample unit; a key may repeat (Environment=)."""
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    settings: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value.strip())
    return settings


def environment(service: dict[str, list[str]]) -> dict[str, str]:
    pairs = (item.partition("=") for value in service.get("Environment", []) for item in shlex.split(value))
    return {name: value for name, _, value in pairs}


def writable(service: dict[str, list[str]], path: str) -> bool:
    """Whether ``path`` is writable, and the same directory for every unit, under the sandbox."""

    def under(roots: list[str]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for v in roots for r in v.split())

    if service.get("PrivateTmp", ["no"])[-1] == "yes" and under(["/tmp /var/tmp"]):  # noqa: S108 - paths checked, not used
        return False  # each unit sees its own /tmp
    if under(service.get("InaccessiblePaths", []) + service.get("ReadOnlyPaths", [])):
        return False
    allowed = ["/" + d for v in service.get("RuntimeDirectory", []) for d in v.split()]
    allowed = [f"/run{d}" for d in allowed] + service.get("ReadWritePaths", [])
    if service.get("ProtectSystem", ["no"])[-1] == "strict":
        return under(allowed)
    return True


def test_the_metrics_directory_is_one_runtime_directory_both_units_can_write() -> None:
    directories = set()
    for name in UNITS:
        service = unit(name)
        assert service["ProtectSystem"] == ["strict"] and service["PrivateTmp"] == ["yes"], name
        metrics = environment(service)["PROMETHEUS_MULTIPROC_DIR"]
        assert metrics == "/run/" + service["RuntimeDirectory"][-1], name
        assert writable(service, metrics), f"{name}: {metrics} is read-only under the unit's sandbox"
        assert int(service["RuntimeDirectoryMode"][-1], 8) & 0o700 == 0o700, name  # owner: User=
        # Two units, one directory: without Preserve=yes stopping one would delete it under the other.
        assert service["RuntimeDirectoryPreserve"] == ["yes"], name
        directories.add((metrics, service["User"][-1]))
    assert len(directories) == 1, f"the units must share one directory and one user: {directories}"
    assert not writable(unit(UNITS[0]), "/var/lib/sender-fp-release")  # the check can say no


def test_units_and_wrapper_agree_on_paths() -> None:
    for name in (*UNITS, "release-cli"):
        text = (DEPLOY / name).read_text()
        assert "RELEASE_CONFIG=/etc/sender-fp-release/config.toml" in text, name
        assert "EnvironmentFile=/etc/sender-fp-release/release.env" in text, name
        assert "/opt/sender-fp-release/.venv/bin/" in text, name


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own parser: an unknown or misspelt setting is a warning we refuse."""
    for name in UNITS:
        # Executables must exist for verify; /bin/true stands in for the venv's.
        text = re.sub(r"/opt/sender-fp-release/\.venv/bin/\w+", "/bin/true", (DEPLOY / name).read_text())
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / n) for n in UNITS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_the_web_units_gunicorn_sums_the_workers_metrics(
    tmp_path: Path, simulator: SimulatorServer, smtp_server: CaptureServer
) -> None:
    """The web unit's ExecStart and Environment, run for real: a timing recorded by another
    process in the directory the worker unit names shows in gunicorn's /metrics."""
    run_dir = tmp_path / "run"  # stands in for /run/sender-fp-release
    run_dir.mkdir()
    web, worker = unit(UNITS[0]), unit(UNITS[1])
    assert environment(web)["PROMETHEUS_MULTIPROC_DIR"] == environment(worker)["PROMETHEUS_MULTIPROC_DIR"]
    config = tmp_path / "config.toml"
    config.write_text(first_toml(DEPLOYMENT))
    port = free_port()
    env = {
        **os.environ,
        **environment(web),
        **env_sample(),
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir),
        "RELEASE_CONFIG": str(config),
        "RELEASE_DATABASE__URL": f"sqlite:///{tmp_path / 'release.sqlite3'}",
        "RELEASE_LIMITS__STORAGE_URL": "memory://",
        "RELEASE_METRICS__ALLOWED_IPS": "127.0.0.1/32",
        "RELEASE_NODES__MX1__API_URL": simulator.url,
    }
    observe = "from release.ops.metrics import GATEWAY_SECONDS\nGATEWAY_SECONDS.labels('mx1', 'release').observe(0.2)\n"
    done = subprocess.run([sys.executable, "-c", observe], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    argv = shlex.split(web["ExecStart"][-1])
    argv[0] = str(ROOT / ".venv" / "bin" / "gunicorn")
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115
    server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                break
            except requests.RequestException:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
                time.sleep(0.2)
        assert response.status_code == 200, response.text
        assert 'release_gateway_request_seconds_count{node="mx1",operation="release"} 1.0' in response.text
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def siteverify_url() -> Iterator[str]:
    """A local siteverify that answers as a provider does to a POST without a token."""
    answer = Response('{"success": false, "error-codes": ["missing-input-response"]}', mimetype="application/json")
    server = make_server("127.0.0.1", 0, answer, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/siteverify"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_documented_procedure_runs_on_the_sample_config(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer, tmp_path: Path, siteverify_url: str
) -> None:
    """deployment.md's first steps (db upgrade, check-config, create-admin) on its sample
    config and env file; only where things live is overridden, the documented way (RELEASE_*)."""
    path = tmp_path / "config.toml"
    path.write_text(first_toml(DEPLOYMENT))
    here = {
        "RELEASE_DATABASE__URL": database_url,
        "RELEASE_SMTP__HOST": "127.0.0.1",
        "RELEASE_SMTP__PORT": str(smtp_server.port),
        "RELEASE_SMTP__SECURITY": "none",
        "RELEASE_SMTP__USERNAME": "",
        "RELEASE_LIMITS__STORAGE_URL": "memory://",
        # The sample's CAPTCHA provider, reached at a local stand-in instead of its vendor.
        "RELEASE_CAPTCHA__VERIFY_URL": siteverify_url,
        "RELEASE_NODES__MX1__API_URL": simulator.url,
        "RELEASE_NODES__MX1__USERNAME": "release",
        "RELEASE_NODES__MX1__PASSWORD": "sim-password-0123",
    }
    app = create_app(load_settings(path, environ={**env_sample(), **here}))
    runner = app.test_cli_runner()
    try:
        assert "created schema at revision" in runner.invoke(args=["db", "upgrade"]).output
        checked = runner.invoke(args=["check-config"])
        assert checked.exit_code == 0, checked.output
        assert "node mx1     ok" in checked.output
        assert "captcha      ok" in checked.output and "rate limits  ok" in checked.output
        created = runner.invoke(args=["create-admin", "alice", "--password-stdin"], input="correct horse battery\n")
        assert created.exit_code == 0 and "created admin account alice" in created.output
    finally:
        close = getattr(app.extensions["release"].mailer, "close", None)
        if close:
            close()
        app.extensions["release"].db.dispose()
