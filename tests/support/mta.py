"""Private Postfix and Rspamd instances for the gateway tests, built from docs/rspamd/.

Nothing here touches the system instances: Rspamd runs from Debian's stock /etc/rspamd with
``--var LOCAL_CONFDIR=<temp dir>`` (so local.d/, override.d/ and plugins.d/ are ours), its own
DBDIR/RUNDIR/LOGDIR and loopback ports; Postfix runs with ``postfix -c <temp dir>`` and its
own queue. The admin files from docs/rspamd/ are copied as they are; the test values (ports,
node, keys, push URL) go into override.d/ files, which is also how an admin overrides a
local.d file. Only Postfix's snippets get their marked port numbers (11332, 10026) replaced.

``Mta.configure(...)`` rewrites the rule's override and restarts Rspamd (a warm start, the
regexp cache is kept between runs in a directory under the system temp dir). For example, to
point the gateway at a service under test::

    mta = start_mta(GatewaySettings(public_url=service_url, link_key=key, push_password=pw,
                                    push_url=f"{service_url}/gateway/v1/rspamd/mx3"))
    ...  # or, on the session's instance: mta.configure(public_url=..., push_url=..., ...)
    smtplib.SMTP("127.0.0.1", mta.smtp_port)  # through the milter; mta.relay_port skips it
    mta.delivered.wait(lambda m: b"Subject: hi" in m.raw)  # what the final mailbox got
    mta.stop()
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis
import requests
from aiosmtpd.controller import Controller

from release.devtools.mailcapture import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "rspamd"
RSPAMD, POSTFIX = "/usr/bin/rspamd", "/usr/sbin/postfix"
RSPAMD_USER = "_rspamd"
# The regexp/hyperscan cache survives the session: a cold Rspamd start costs ~20 s of CPU.
CACHE_DIR = Path(tempfile.gettempdir()) / "sender-fp-release-rspamd-cache"
REDIS_HOST = os.environ.get("TEST_RSPAMD_REDIS", "127.0.0.1:6379")
# Bayes data of the test Rspamd lives in its own Redis database, emptied at teardown.
REDIS_DB = int(os.environ.get("TEST_RSPAMD_REDIS_DB", "14"))
START_TIMEOUT = 90.0
# GTUBE makes Rspamd skip every rule (the task is flagged "skip"): a plain reject, no link.
# Real spam signals for the tests: a header X-Test-Spam with one of these values, scored by
# the test-only multimap rules below (one by score, one as a pre-result like many modules).
SCORE_SPAM, PREFILTER_SPAM = "score", "prefilter"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def mta_reason() -> str | None:
    """None when private Postfix and Rspamd instances can run here, else why not."""
    for binary, package in ((POSTFIX, "postfix"), (RSPAMD, "rspamd")):
        if not os.access(binary, os.X_OK):
            return f"{binary} is missing (apt-get install {package}; scripts/test-deps.sh does it)"
    if os.geteuid() != 0:
        return "private Postfix and Rspamd instances need root (they drop to their own users)"
    return None


@dataclass(frozen=True)
class Delivered:
    """One message the final mailbox (the capture server behind Postfix) received."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes


class Mailbox:
    """The final mailbox: an aiosmtpd server keeping raw bytes and envelopes (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Delivered] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, server_hostname="mailbox.localhost")

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        with self._lock:
            self._messages.append(Delivered(str(envelope.mail_from), tuple(envelope.rcpt_tos), bytes(raw)))
        return "250 kept"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def messages(self) -> list[Delivered]:
        """What arrived so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def wait(self, predicate: Any = None, timeout: float = 20.0) -> Delivered:
        """The first message matching ``predicate`` (any if None); fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages():
                if predicate is None or predicate(message):
                    return message
            time.sleep(0.05)
        raise AssertionError(f"nothing matching arrived in the mailbox within {timeout} s")


@dataclass
class Pushed:
    """One request the stand-in push receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


class PushReceiver:
    """A stand-in for the service's push endpoint: records requests, answers ``status``;
    over https when given a server context (as the real service is reached)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.status = 200
        self.delay = 0.0  # seconds before answering
        self.requests: list[Pushed] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.requests.append(Pushed(self.path, {k: v for k, v in self.headers.items()}, body))
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            # The handshake then happens in the request's thread, not in the accept loop.
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="push-receiver", daemon=True)

    def start(self) -> PushReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class GatewaySettings:
    """The rule's values (local.d/sender_fp_release.conf) the tests set via override.d."""

    node: str = "mx3"
    public_url: str = "https://release.example.com"
    link_key: str = "test-link-key-0123456789"
    push_password: str = "test-push-password-0123"
    push_url: str = ""
    max_size: int = 26214400
    timeout: float = 5.0

    def ucl(self) -> str:
        values = {k: v for k, v in self.__dict__.items() if v != ""}
        return "".join(f"{k} = {json.dumps(v)};\n" for k, v in values.items())


@dataclass
class Mta:
    """Running private Rspamd + Postfix, and what the tests read from them."""

    base: Path
    settings: GatewaySettings
    delivered: Mailbox
    smtp_port: int = field(default_factory=free_port)  # inbound, through the milter
    relay_port: int = field(default_factory=free_port)  # re-injection, no milter
    normal_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    controller_password: str = "test-controller-password"
    ca_file: Path | None = None  # the CA Rspamd trusts for the push (instead of the system's)
    _rspamd: subprocess.Popen[bytes] | None = None

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller_port}"

    @property
    def rspamd_log(self) -> Path:
        return self.base / "rspamd" / "log" / "rspamd.log"

    @property
    def postfix_log(self) -> Path:
        return self.base / "postfix" / "maillog"

    def learned(self) -> int:
        """Rspamd's count of learned messages (controller /stat, field ``learned``)."""
        answer = requests.get(f"{self.controller_url}/stat", headers={"Password": self.controller_password}, timeout=10)
        answer.raise_for_status()
        return int(answer.json()["learned"])

    def configure(self, **changes: Any) -> None:
        """Change the rule's settings (node, public_url, link_key, push_password, push_url,
        max_size, timeout) and restart Rspamd with them (a few seconds with a warm cache)."""
        for key, value in changes.items():
            if not hasattr(self.settings, key):
                raise TypeError(f"unknown rule setting {key}")
            setattr(self.settings, key, value)
        self._write_rule_override()
        self._stop_rspamd()
        self._start_rspamd()

    @contextmanager
    def rspamd_down(self) -> Iterator[None]:
        """Rspamd stopped for the block (Postfix keeps running), started again after it."""
        self._stop_rspamd()
        try:
            yield
        finally:
            self._start_rspamd()

    # --- Rspamd -------------------------------------------------------------------------

    def _rspamd_dirs(self) -> dict[str, Path]:
        top = self.base / "rspamd"
        return {name: top / name for name in ("etc", "db", "run", "log")}

    def _write_rule_override(self) -> None:
        (self._rspamd_dirs()["etc"] / "override.d" / "sender_fp_release.conf").write_text(self.settings.ucl())

    def _setup_rspamd(self) -> None:
        dirs = self._rspamd_dirs()
        etc = dirs["etc"]
        # The admin's files, unchanged.
        shutil.copytree(DOCS / "local.d", etc / "local.d")
        shutil.copytree(DOCS / "plugins.d", etc / "plugins.d")
        shutil.copy(DOCS / "rspamd.conf.local", etc / "rspamd.conf.local")
        override = etc / "override.d"
        override.mkdir()
        self._write_rule_override()
        host, _, port = REDIS_HOST.partition(":")
        overrides = {
            "worker-normal.inc": f'bind_socket = "127.0.0.1:{self.normal_port}";\ncount = 1;\n',
            "worker-proxy.inc": f'bind_socket = "127.0.0.1:{self.proxy_port}";\ncount = 1;\n',
            "worker-controller.inc": (
                f'bind_socket = "127.0.0.1:{self.controller_port}";\ncount = 1;\n'
                f'password = "{self.controller_password}";\n'
                # Stock config trusts loopback without a password; the test wants it checked.
                'secure_ip = "192.0.2.1";\n'
            ),
            "classifier-bayes.conf": f'servers = "{host}:{port or 6379}";\ndb = "{REDIS_DB}";\n',
            "options.inc": f'hs_cache_dir = "{CACHE_DIR}/";\n' + self._trusted_ca(),
            "logging.inc": 'level = "info";\n',
            "multimap.conf": TEST_SPAM_RULES.format(maps=override),
        }
        (override / "test-spam-score.map").write_text(f"{SCORE_SPAM}\n")
        (override / "test-spam-prefilter.map").write_text(f"{PREFILTER_SPAM}\n")
        for name, text in overrides.items():
            (override / name).write_text(text)
        for path in (*dirs.values(), CACHE_DIR):
            path.mkdir(parents=True, exist_ok=True)
        for path in (dirs["db"], dirs["run"], dirs["log"], CACHE_DIR):
            shutil.chown(path, RSPAMD_USER, RSPAMD_USER)

    def _trusted_ca(self) -> str:
        """The options line making Rspamd trust ``ca_file`` (copied where its workers can read it)."""
        if self.ca_file is None:
            return ""
        copy = self.base / "rspamd" / "push-ca.pem"
        shutil.copy(self.ca_file, copy)
        return f'ssl_ca_path = "{copy}";\n'

    def _start_rspamd(self) -> None:
        dirs = self._rspamd_dirs()
        command = [RSPAMD, "-f", "-u", RSPAMD_USER, "-g", RSPAMD_USER, "-c", "/etc/rspamd/rspamd.conf"]
        for var, key in (("LOCAL_CONFDIR", "etc"), ("DBDIR", "db"), ("RUNDIR", "run"), ("LOGDIR", "log")):
            command += ["--var", f"{var}={dirs[key]}"]
        out = (self.base / "rspamd" / "stdout.log").open("ab")
        self._rspamd = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not _http_ok(f"{self.controller_url}/ping") or not _http_ok(f"http://127.0.0.1:{self.normal_port}/ping"):
            if self._rspamd.poll() is not None:
                raise RuntimeError(f"rspamd exited with {self._rspamd.returncode}; see {self.rspamd_log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rspamd did not answer within {START_TIMEOUT} s; see {self.rspamd_log}")
            time.sleep(0.2)
        _wait_port(self.proxy_port, deadline)

    def _stop_rspamd(self) -> None:
        process, self._rspamd = self._rspamd, None
        if process is not None:
            _stop_group(process)

    # --- Postfix ------------------------------------------------------------------------

    def _postfix_dir(self) -> Path:
        return self.base / "postfix"

    def _setup_postfix(self) -> None:
        top = self._postfix_dir()
        conf, queue, data = top / "etc", top / "queue", top / "data"
        for path in (conf, queue, data):
            path.mkdir(parents=True)
        shutil.chown(data, "postfix", "postfix")
        snippet = (DOCS / "postfix" / "main.cf").read_text().replace("127.0.0.1:11332", f"127.0.0.1:{self.proxy_port}")
        (conf / "main.cf").write_text(
            MAIN_CF.format(queue=queue, data=data, log=self.postfix_log, logdir=top, mailbox=self.delivered.port)
            + snippet
        )
        relay = (DOCS / "postfix" / "master.cf").read_text().replace("127.0.0.1:10026", f"127.0.0.1:{self.relay_port}")
        (conf / "master.cf").write_text(MASTER_CF.format(smtp=self.smtp_port) + relay)

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self._postfix_dir() / "etc"), *args], capture_output=True, text=True, timeout=60
        )

    def _start_postfix(self) -> None:
        done = self._postfix("start")
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed: {done.stdout}{done.stderr}")
        deadline = time.monotonic() + START_TIMEOUT
        _wait_port(self.smtp_port, deadline)
        _wait_port(self.relay_port, deadline)

    def _stop_postfix(self) -> None:
        self._postfix("stop")
        pid_file = self._postfix_dir() / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _pid_alive(pid_file):
            time.sleep(0.1)
        if _pid_alive(pid_file):
            self._postfix("abort")

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Mta:
        self.delivered.start()
        self._setup_rspamd()
        self._setup_postfix()
        try:
            self._start_rspamd()
            self._start_postfix()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both daemons and the mailbox; empty the Bayes database the test used."""
        try:
            self._stop_postfix()
            self._stop_rspamd()
            self.delivered.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            _empty_bayes_database()


MAIN_CF = """\
# Test instance: loopback only, own queue, delivers everything to the capture mailbox.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {log}
maillog_file_prefixes = {logdir}
myhostname = mx-test.localhost
mydomain = localhost
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
# The domains this MX takes mail for (the re-injection listener takes mail for no others);
# all of it goes on to the final mailbox, the capture server.
relay_domains = example.net, example.com, example.org
relayhost = [127.0.0.1]:{mailbox}
smtp_tls_security_level = none
smtpd_tls_security_level = none
disable_dns_lookups = yes
smtp_dns_support_level = disabled
biff = no
append_dot_mydomain = no
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
"""

TEST_SPAM_RULES = """\
TEST_SPAM_SCORE {{
  type = "header";
  header = "X-Test-Spam";
  map = "{maps}/test-spam-score.map";
  symbol = "TEST_SPAM_SCORE";
  score = 100.0;
}}
TEST_SPAM_PREFILTER {{
  type = "header";
  header = "X-Test-Spam";
  map = "{maps}/test-spam-prefilter.map";
  symbol = "TEST_SPAM_PREFILTER";
  action = "reject";
  message = "Test prefilter reject";
}}
"""

MASTER_CF = """\
# Test instance: the inbound listener on a free loopback port (not 25), no chroot.
127.0.0.1:{smtp} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def start_mta(settings: GatewaySettings, *, ca_file: Path | None = None) -> Mta:
    """Start Rspamd and Postfix in a fresh directory with the rule's ``settings``; Rspamd
    trusts only ``ca_file`` for https when given.

    The directory is made here, not taken from pytest: the daemons' own users must be able
    to reach their queue and data directories (pytest's are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="sender-fp-release-mta-"))
    base.chmod(0o755)
    return Mta(base=base, settings=settings, delivered=Mailbox(), ca_file=ca_file).start()


def _empty_bayes_database() -> None:
    """Drop what the test Rspamd learned (its own Redis database); no Redis, nothing to drop."""
    host, _, port = REDIS_HOST.partition(":")
    try:
        redis.Redis(host=host, port=int(port or 6379), db=REDIS_DB, socket_connect_timeout=2).flushdb()
    except redis.RedisError:
        pass


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _wait_port(port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.1)


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """TERM the process group (Rspamd's main and its workers), KILL what is left after 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        process.wait(timeout=10)


# -- a client of the private Postfix ---------------------------------------------------------

LINK = re.compile(r"https?://\S+")
SENDER, RECIPIENTS = "alice@example.org", ("bob@example.net", "carol@example.net")


def message(subject: str, *, spam: str = "", body: str = "Lunch on Thursday at noon, as we said.") -> bytes:
    """A complete message (every header Postfix would otherwise add), CRLF line ends;
    ``spam``: an X-Test-Spam value the test-only rules score (SCORE_SPAM, PREFILTER_SPAM)."""
    headers = [
        f"From: Alice <{SENDER}>",
        "To: Bob <bob@example.net>, Carol <carol@example.net>",
        f"Subject: {subject}",
        "Date: Sat, 05 Dec 2026 10:00:00 +0000",
        f"Message-ID: <{hashlib.sha256(subject.encode()).hexdigest()[:20]}@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
    ]
    if spam:
        headers.append(f"X-Test-Spam: {spam}")
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


def send(port: int, raw: bytes, rcpts: tuple[str, ...] = RECIPIENTS) -> tuple[int, str]:
    """SMTP transaction to Postfix; the reply that ended it (250 and "" when accepted)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.example.org")
        try:
            client.sendmail(SENDER, list(rcpts), raw)
        except smtplib.SMTPResponseException as exc:  # refused at MAIL FROM or DATA
            return exc.smtp_code, exc.smtp_error.decode()
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return code, text.decode()
    return 250, ""
