"""The operator docs cannot drift from the code: every command, option, config key and
environment variable they name must exist, and the sample config must load."""

from __future__ import annotations

import dataclasses
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
from flask import Flask

from release import create_app
from release.config import SECTIONS, NodeSettings, load_settings, settings_from_mapping
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from tests.support.config import make_config

DOCS = Path(__file__).resolve().parents[2] / "docs"
DEPLOYMENT = DOCS / "deployment.md"
ENV_SAMPLE = DOCS / "deploy" / "release.env"
# `flask --app app <command> [<subcommand>]`, and the release-cli wrapper that runs it.
COMMAND = re.compile(r"(?:flask --app app|release-cli) ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.DOTALL | re.MULTILINE)
SECTION_KEY = re.compile(r"`\[(\w+)\] (\w+)")
DOTTED_KEY = re.compile(rf"`({'|'.join([*SECTIONS, 'nodes'])})\.(\w+)")
ENV_NAME = re.compile(r"\bRELEASE_([A-Z0-9_]+?)__([A-Z0-9_]+?)(?:__([A-Z0-9_]+))?\b")


def doc_files() -> list[Path]:
    files = [p for p in DOCS.rglob("*") if p.is_file() and p.suffix in {".md", ".service", ".conf", ".env", ""}]
    return sorted(files) + [DOCS.parent / "README.md"]


def fields(section: str) -> set[str]:
    cls = NodeSettings if section == "nodes" else SECTIONS[section]
    return {f.name for f in dataclasses.fields(cls)}


@pytest.fixture
def app(tmp_path: Path, simulator: SimulatorServer) -> Flask:
    return create_app(settings_from_mapping(make_config(f"sqlite:///{tmp_path / 'docs.sqlite3'}", simulator, 2525)))


def mentioned_commands() -> list[tuple[Path, int, str, str | None, list[str]]]:
    found = []
    for path in doc_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in COMMAND.finditer(line):
                # Options belong to the command up to the end of its code span or comment.
                tail = re.split(r"`|\s#|\|", line[match.end() :], maxsplit=1)[0]
                found.append((path, number, match[1], match[2], OPTION.findall(tail)))
    return found


def test_every_documented_command_and_option_exists(app: Flask) -> None:
    ctx = click.Context(app.cli)
    seen = set()
    for path, number, name, sub, options in mentioned_commands():
        where = f"{path.relative_to(DOCS.parent)}:{number}"
        command = app.cli.get_command(ctx, name)
        assert command is not None, f"{where}: `flask --app app {name}` is not a command of the app"
        if isinstance(command, click.Group):
            assert sub is not None, f"{where}: `{name}` needs a subcommand"
            command = command.get_command(ctx, sub)
            assert command is not None, f"{where}: `flask --app app {name} {sub}` does not exist"
            name = f"{name} {sub}"
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}
        for option in options:
            assert option in known, f"{where}: `{name}` has no option {option}"
        seen.add(name)
    # The regex found the commands an operator needs; an empty match would prove nothing.
    assert {"db upgrade", "worker", "check-config", "create-admin", "sign-link", "purge"} <= seen


def env_sample() -> dict[str, str]:
    """The secrets file's variables, with a random value wherever the sample leaves it empty."""
    env = {}
    for line in ENV_SAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip() or secrets.token_urlsafe(24)
    return env


def test_deployment_toml_samples_load_with_the_env_file(tmp_path: Path) -> None:
    raw = TOML_BLOCK.findall(DEPLOYMENT.read_text())
    assert raw, "docs/deployment.md has no ```toml sample"
    full = tomllib.loads(raw[0])
    assert set(full) == {*SECTIONS, "nodes"}, "the first sample is the whole file: every section"
    # The first sample as written; each later snippet on top of it (it shows one section).
    texts = [raw[0], *(_dump({**full, **tomllib.loads(snippet)}) for snippet in raw[1:])]
    for i, text in enumerate(texts):
        path = tmp_path / f"sample{i}.toml"
        path.write_text(text)
        data = tomllib.loads(text)
        settings = load_settings(path, environ=env_sample())  # raises ConfigError naming a bad key
        assert [n.name for n in settings.nodes] == [n["name"] for n in data["nodes"]]
        assert all(n.password for n in settings.nodes), "every node gets its password from release.env"
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


def test_every_config_key_named_in_prose_exists() -> None:
    for path in doc_files():
        text = path.read_text()
        dotted = [(s, k) for s, k in DOTTED_KEY.findall(text) if not (DOCS.parent / f"{s}.{k}").exists()]  # app.py
        for section, key in SECTION_KEY.findall(text) + dotted:
            assert section in SECTIONS or section == "nodes", f"{path.name}: no section [{section}]"
            assert key in fields(section), f"{path.name}: [{section}] has no key {key}"


def test_every_environment_variable_named_maps_to_a_key() -> None:
    names = 0
    for path in doc_files():
        for section, middle, last in ENV_NAME.findall(path.read_text()):
            section, key = section.lower(), (last or middle).lower()
            if section == "nodes" and not last:
                continue  # the pattern RELEASE_NODES__<NAME>__<KEY> written out in prose
            assert section in SECTIONS or section == "nodes", f"{path.name}: no section {section}"
            assert key in fields(section), f"{path.name}: RELEASE_{section.upper()}__... names no key {key}"
            names += 1
    assert names >= 8


def test_nginx_body_limit_matches_the_app(app: Flask) -> None:
    size = re.search(r"client_max_body_size (\d+)k;", (DOCS / "deploy" / "nginx.conf").read_text())
    assert size is not None and int(size[1]) * 1024 == app.config["MAX_CONTENT_LENGTH"]


def test_units_and_wrapper_agree_on_paths() -> None:
    for name in ("release-web.service", "release-worker.service", "release-cli"):
        text = (DOCS / "deploy" / name).read_text()
        assert "RELEASE_CONFIG=/etc/sender-fp-release/config.toml" in text, name
        assert "EnvironmentFile=/etc/sender-fp-release/release.env" in text, name
        assert "/opt/sender-fp-release/.venv/bin/" in text, name


LINK = re.compile(r"\]\(([^)\s#]*)(?:#([^)\s]+))?\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_and_anchors_resolve() -> None:
    checked = 0
    for path in [p for p in doc_files() if p.suffix == ".md"]:
        for target, anchor in LINK.findall(path.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            dest = (path.parent / target).resolve() if target else path
            assert dest.exists(), f"{path.name}: link to missing {target}"
            if anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", dest.read_text(), re.MULTILINE)
                assert anchor in {slug(h) for h in headings}, f"{path.name}: no heading #{anchor} in {dest.name}"
            checked += 1
    assert checked >= 20


def test_documented_procedure_runs_on_the_sample_config(
    database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer, tmp_path: Path
) -> None:
    """deployment.md's first steps (db upgrade, check-config, create-admin) on its sample
    config and env file; only where things live is overridden, the documented way (RELEASE_*)."""
    path = tmp_path / "config.toml"
    path.write_text(TOML_BLOCK.findall(DEPLOYMENT.read_text())[0])
    here = {
        "RELEASE_DATABASE__URL": database_url,
        "RELEASE_SMTP__HOST": "127.0.0.1",
        "RELEASE_SMTP__PORT": str(smtp_server.port),
        "RELEASE_SMTP__SECURITY": "none",
        "RELEASE_SMTP__USERNAME": "",
        "RELEASE_LIMITS__STORAGE_URL": "memory://",
    }
    for node in ("MX1", "MX2"):
        here |= {
            f"RELEASE_NODES__{node}__API_URL": simulator.url,
            f"RELEASE_NODES__{node}__USERNAME": "release",
            f"RELEASE_NODES__{node}__PASSWORD": "sim-password-0123",
        }
    app = create_app(load_settings(path, environ={**env_sample(), **here}))
    runner = app.test_cli_runner()
    try:
        assert "created schema at revision" in runner.invoke(args=["db", "upgrade"]).output
        checked = runner.invoke(args=["check-config"])
        assert checked.exit_code == 0, checked.output
        assert "node mx1     ok" in checked.output and "node mx2     ok" in checked.output
        created = runner.invoke(args=["create-admin", "alice", "--password-stdin"], input="correct horse battery\n")
        assert created.exit_code == 0 and "created admin account alice" in created.output
    finally:
        close = getattr(app.extensions["release"].mailer, "close", None)
        if close:
            close()
        app.extensions["release"].db.dispose()


SOURCE_PATH = re.compile(r"(?<![\w/.-])((?:release|tests|templates|migrations|bench|docs)/[\w./-]*\w)")


def test_every_source_path_the_docs_name_exists() -> None:
    """docs/architecture.md walks a report through the code file by file: a moved or renamed
    module must not leave the docs pointing at nothing."""
    root = DOCS.parent
    missing = sorted(
        f"{doc.relative_to(root)}: {path}"
        for doc in doc_files()
        if doc.suffix == ".md"
        for path in SOURCE_PATH.findall(doc.read_text(encoding="utf-8"))
        if not (root / path).exists() and not (root / path.rstrip("/")).exists()
    )
    assert missing == []
