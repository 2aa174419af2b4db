"""The simulator command as an operator runs it: a real process, its printed node block loaded
by the service's config loader, the real gateway client finding the added messages, and the
page's form over HTTP."""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from click.testing import CliRunner

from release import DEFAULT_CONFIG, PROJECT_ROOT
from release.config import settings_from_mapping
from release.core import links
from release.devtools.simulator.command import simulator_command
from release.gateway import HalonGateway

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LINK_KEY = "simulator-cli-link-key-0123456789"
MESSAGE_LINE = re.compile(r"^Rejected message (\S+): ")


@dataclass
class Run:
    """A running simulator process and what it printed so far."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def read_until(self, predicate: Any, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("simulator output so far:\n" + "".join(self.lines)) from None
            if line is None:
                raise AssertionError(f"simulator exited {self.proc.wait()}:\n" + "".join(self.lines))
            self.lines.append(line)
        return self.lines

    @property
    def block(self) -> dict[str, Any]:
        """The printed [[nodes]] block, parsed as TOML."""
        text = "".join(self.lines)
        start = text.index("[[nodes]]")
        node: dict[str, Any] = tomllib.loads(text[start : text.index("\n\n", start)])["nodes"][0]
        return node

    @property
    def messages(self) -> dict[str, str]:
        """Transaction id -> the line after it (the report link or the command printing one)."""
        found = {}
        for i, line in enumerate(self.lines):
            match = MESSAGE_LINE.match(line)
            if match and i + 1 < len(self.lines):
                found[match.group(1)] = self.lines[i + 1].strip()
        return found


def start(args: list[str], env: dict[str, str], *, flask: bool = False) -> Run:
    entry = (
        [str(BIN / "flask"), "--app", "app", "simulator"]
        if flask
        else [sys.executable, "-m", "release.devtools.simulator"]
    )
    proc = subprocess.Popen(
        [*entry, "--port", "0", *args], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    run = Run(proc)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            run._queue.put(line)
        run._queue.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return run


def printed(n: int) -> Any:
    """A predicate: the node block and ``n`` messages, each with its link line, are out."""

    def done(lines: list[str]) -> bool:
        starts = [i for i, x in enumerate(lines) if MESSAGE_LINE.match(x)]
        block = "[[nodes]]\n" in lines and "\n" in lines[lines.index("[[nodes]]\n") :]
        return block and len(starts) == n and (not starts or starts[-1] < len(lines) - 1)

    return done


def stop(run: Run) -> None:
    """Ctrl+C, as an operator stops it."""
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGINT)
        try:
            run.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            raise


def service_settings(node: dict[str, Any], **app: Any) -> Any:
    """The printed block inside a production-shaped config, loaded as the service loads it."""
    return settings_from_mapping(
        {
            "app": {"public_url": "https://release.example.test", "secret_key": "k" * 8 + os.urandom(12).hex(), **app},
            "links": {"keys": [LINK_KEY]},
            "captcha": {"provider": "altcha"},
            "nodes": [node],
        }
    )


@pytest.fixture
def no_config_env() -> dict[str, str]:
    if (PROJECT_ROOT / DEFAULT_CONFIG).is_file():
        pytest.skip(f"{DEFAULT_CONFIG} exists here; the no-config path cannot be shown")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_")}
    return {**env, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        stop(run)


ADD = [
    "--add", "invoices@supplier.example,accounts@example.com,Invoice 117, March",
    "--add", "anna@partner.example,alice@example.com;bob@example.com,Notes",
]  # fmt: skip


@pytest.mark.parametrize(("generation", "node_type"), [("6", "halon6"), ("5", "halon5")])
def test_without_a_config_the_printed_block_finds_the_added_messages(
    no_config_env: dict[str, str], runs: list[Run], generation: str, node_type: str
) -> None:
    run = start(["--generation", generation, *ADD], no_config_env)
    runs.append(run)
    run.read_until(printed(2))
    node = run.block
    assert node["type"] == node_type
    secret = node["api_key"] if generation == "6" else node["password"]
    assert len(secret) >= 16  # made up for this run, not a shared default
    settings = service_settings(node)
    gateway = HalonGateway(settings.nodes[0])
    messages = run.messages
    assert len(messages) == 2
    first, second = messages
    copies = gateway.find(first)
    assert [(c.sender, c.recipient, c.subject) for c in copies] == [
        ("invoices@supplier.example", "accounts@example.com", "Invoice 117, March")
    ]
    assert copies[0].quarantine == settings.nodes[0].short_quarantine
    assert sorted(c.recipient for c in gateway.find(second)) == ["alice@example.com", "bob@example.com"]
    # No link key without a config: the command that prints the link, for after pasting the block.
    assert messages[first].endswith(f"flask --app app sign-link --node sim --msgid {first}")
    stop(run)
    assert run.proc.returncode == 0
    assert "simulator stopped" in run.read_until(lambda lines: "simulator stopped\n" in lines)[-1]


def test_with_a_config_flask_prints_signed_links_the_service_accepts(tmp_path: Path, runs: list[Run]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[app]\npublic_url = \"https://release.example.test\"\n"
        f"secret_key = \"{os.urandom(16).hex()}\"\n"
        f"[database]\nurl = \"sqlite:///{tmp_path}/never-created/db.sqlite\"\n"
        f"[links]\nkeys = [\"{LINK_KEY}\"]\n[captcha]\nprovider = \"altcha\"\n"
        "[[nodes]]\nname = \"mx1\"\ntype = \"halon6\"\napi_url = \"https://mx1.example.test\"\n"
        f"api_key = \"{os.urandom(16).hex()}\"\nhalon_version = \"6.10\"\n",
        encoding="utf-8",
    )  # fmt: skip
    env = {**os.environ, "RELEASE_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    api_key = "operator-chosen-key-0123456789"
    run = start(["--node", "mx1", "--api-key", api_key, ADD[0], ADD[1]], env, flask=True)
    runs.append(run)
    run.read_until(printed(1))
    assert run.block["api_key"] == api_key
    assert "made up" not in "".join(run.lines)  # the operator's own key is not announced as new
    ((transaction, link),) = run.messages.items()
    url = link.removeprefix("report link: ")
    assert url.startswith("https://release.example.test/report?")
    verified = links.verify(
        dict(parse_qsl(urlsplit(url).query)), keys=[LINK_KEY], nodes=["mx1"], max_age_seconds=3600, now=time.time()
    )
    assert verified.message_id == transaction
    assert HalonGateway(service_settings(run.block).nodes[0]).find(transaction)
    # The page shows the same link: signed for the time the message was rejected, not the visit.
    assert f'<a href="{url.replace("&", "&amp;")}">' in requests.get(run.block["api_url"] + "/", timeout=5).text
    assert not (tmp_path / "never-created").exists()  # no database was needed


def test_the_page_form_holds_a_message_and_shows_it_escaped(no_config_env: dict[str, str], runs: list[Run]) -> None:
    run = start([], no_config_env)
    runs.append(run)
    run.read_until(printed(0))
    base = run.block["api_url"]
    page = requests.get(base + "/", timeout=5)
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert 'action="/messages"' in page.text
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    added = requests.post(
        base + "/messages",
        data={"sender": "mallory@evil.example", "recipients": "alice@example.com, bob@example.com", "subject": hostile},
        allow_redirects=False,
        timeout=5,
    )
    assert added.status_code == 303
    transaction = added.headers["Location"].removeprefix("/#t-")
    page = requests.get(base + "/", timeout=5).text
    assert hostile not in page and "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"sign-link --node sim --msgid {transaction}" in page
    copies = HalonGateway(service_settings(run.block).nodes[0]).find(transaction)
    assert sorted(c.recipient for c in copies) == ["alice@example.com", "bob@example.com"]
    assert {c.subject for c in copies} == {hostile}  # stored as given, only escaped when shown


@pytest.mark.parametrize(
    ("data", "headers", "status"),
    [
        ({"sender": "a@x.example", "recipients": "b@y.example"}, {"Origin": "https://evil.example"}, 403),
        ({"sender": "a@x.example", "recipients": "b@y.example"}, {"Sec-Fetch-Site": "cross-site"}, 403),
        ({"sender": "a@x.example", "recipients": ""}, {}, 400),
        ({"sender": "a@x.example", "recipients": "b@y.example", "subject": "line\r\nBcc: c@z.example"}, {}, 400),
        ({"sender": "a\u202e@x.example", "recipients": "b@y.example"}, {}, 400),
        ({"sender": "a@x.example", "recipients": "b@y.example", "subject": "x" * 70_000}, {}, 413),
    ],
    ids=["foreign-origin", "cross-site", "no-recipient", "header-injection", "bidi", "too-large"],
)
def test_the_form_refuses_without_adding(
    data: dict[str, str], headers: dict[str, str], status: int, no_config_env: dict[str, str], runs: list[Run]
) -> None:
    run = start(["--generation", "5"], no_config_env)
    runs.append(run)
    run.read_until(printed(0))
    base = run.block["api_url"]
    refused = requests.post(base + "/messages", data=data, headers=headers, allow_redirects=False, timeout=5)
    assert refused.status_code == status
    assert "0 copies" in requests.get(base + "/", timeout=5).text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generation", "5", "--api-key", "x" * 20], "--api-key is for 6.x"),
        (["--users", "api:secret"], "--users is for 5.x"),
        (["--api-key", "short"], "nodes[0].api_key"),
        (["--generation", "5", "--users", "no-colon"], "username:password"),
        (["--add", "only-a-sender@x.example"], "sender,recipient"),
        (["--node", "MX_1"], "nodes[0].name"),
    ],
)
def test_bad_options_say_what_to_fix_before_serving(args: list[str], message: str) -> None:
    result = CliRunner().invoke(simulator_command, ["--port", "0", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Halon" not in result.output  # nothing was served


def test_a_busy_port_says_so() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(simulator_command, ["--port", str(port)])
    assert result.exit_code == 1
    assert f"Port {port} is in use" in result.output  # werkzeug's own words
    assert f"Error: cannot listen on 127.0.0.1:{port}; pick another --port" in result.output
    assert "Traceback" not in result.output


def test_an_address_it_cannot_listen_on_says_so() -> None:
    result = CliRunner().invoke(simulator_command, ["--port", "0", "--host", "no-such-host.invalid"])
    assert result.exit_code == 1
    assert "Error: cannot listen on no-such-host.invalid:0; pick another --port or --host" in result.output
    assert "Traceback" not in result.output


def documented_runs() -> list[list[str]]:
    """The simulator commands in docs/halon/README.md's shell blocks, as argument lists."""
    text = (ROOT / "docs" / "halon" / "README.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        for line in block.splitlines():
            for entry in ("flask --app app simulator", ".venv/bin/python -m release.devtools.simulator"):
                if line.startswith(entry):
                    found.append(shlex.split(line.removeprefix(entry)))
    return found


def test_the_docs_show_both_entries() -> None:
    assert len(documented_runs()) == 2


@pytest.mark.parametrize("args", documented_runs(), ids=lambda a: " ".join(a[:2]))
def test_the_documented_commands_run_and_their_block_loads(
    args: list[str], no_config_env: dict[str, str], runs: list[Run]
) -> None:
    if "--port" in args:  # the documented port may be taken here; any free one proves the same
        del args[args.index("--port") : args.index("--port") + 2]
    run = start(args, no_config_env)
    runs.append(run)
    run.read_until(printed(args.count("--add")))
    gateway = HalonGateway(service_settings(run.block).nodes[0])
    for transaction in run.messages:
        assert gateway.find(transaction)


def test_every_option_the_section_names_exists() -> None:
    text = (ROOT / "docs" / "halon" / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### A stand-in node for your own installation") :]
    table = "\n".join(line for line in section.splitlines() if line.startswith("| `--"))
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", table))
    known = {opt for param in simulator_command.params for opt in param.opts}
    assert named >= {"--generation", "--api-key", "--users", "--add", "--node", "--port", "--host"}
    assert named <= known | {"--help"}, named - known
