"""The operator docs cannot drift from the code: every command, option, config key and
environment variable they name must exist (the deploy samples working together:
test_deploy.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import pytest
from flask import Flask

from release import create_app
from release.config import SECTIONS, NodeSettings, settings_from_mapping
from release.devtools.simulator import SimulatorServer
from tests.support.config import make_config

DOCS = Path(__file__).resolve().parents[2] / "docs"
DEPLOYMENT = DOCS / "deployment.md"
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
