"""Messages for preview tests (a genuine invoice, a phish, hostile HTML), a stack that
holds one on an rspamd node with a release link ready for it, and that stack served over
HTTP for the browser tests."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.serving import make_server

from release.core import links
from release.db.models import Recipient, Report, StoredCopy, StoredMessage
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import HalonSimulator, SimulatorServer
from release.gateway.stored import message_id_of
from tests.support.rspamd import NODE, RECIPIENTS, SENDER, build_rspamd_stack, exporter_headers, push
from tests.support.stack import Stack, close_stack, drain_due
from tests.support.visitor import release_token_from, report_path, submit_report

# The release page's sandboxed preview frame and its address.
FRAME = re.compile(r'<iframe class="preview-frame" src="([^"]+)" sandbox=""')
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PE = b"MZ\x90\x00\x03" + b"\x00" * 200


def mail(
    *,
    subject: str = "Invoice 2026-118",
    from_: str = f"Anna Partner <{SENDER}>",
    text: str | None = "Hello,\n\nplease find invoice 2026-118 attached.\n\nAnna\n",
    html: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    headers: Sequence[tuple[str, str]] = (),
    to: Sequence[str] = RECIPIENTS,
) -> bytes:
    """A message with CRLF line ends: text and/or HTML, attachments as (name, type, bytes)."""
    msg = EmailMessage()
    msg["From"] = from_
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 12, 5, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain="partner.example")
    for name, value in headers:
        msg[name] = value
    if text is not None:
        msg.set_content(text)
    if html is not None:
        if text is not None:
            msg.add_alternative(html, subtype="html")
        else:
            msg.set_content(html, subtype="html")
    for name, kind, data in attachments:
        maintype, subtype = kind.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def invoice(to: Sequence[str] = RECIPIENTS) -> bytes:
    """What a genuine supplier sends: text and HTML, a PDF, a link to its own domain."""
    html = (
        "<html><body><p>Hello,</p><p>please find <b>invoice 2026-118</b> attached.</p>"
        '<p>Pay online at <a href="https://pay.partner.example/inv/2026-118">pay.partner.example</a>.</p>'
        '<img src="https://partner.example/logo.png" alt="Partner logo" width="120" height="40">'
        "<p>Anna</p></body></html>"
    )
    return mail(html=html, attachments=[("invoice-2026-118.pdf", "application/pdf", PDF)], to=to)


def phish() -> bytes:
    """A classic: a display name that names a bank's address, replies elsewhere, a link whose
    text names the bank and goes to another domain, and a program posing as a PDF."""
    html = (
        "<p>Your account is locked.</p>"
        '<p><a href="https://secure-login.bank-verify.example/x">https://www.mybank.example/login</a></p>'
        "<script>document.title='pwned'</script>"
    )
    return mail(
        subject="Account locked: verify now",
        from_='"security@mybank.example" <alerts@bank-verify.example>',
        text="Your account is locked. Log in at https://secure-login.bank-verify.example/x\n",
        html=html,
        headers=[("Reply-To", "collect@elsewhere.example")],
        attachments=[("statement.pdf.exe", "application/pdf", PE)],
    )


def held_with_link(
    stack: Stack,
    content: bytes,
    symbols: Sequence[str] = ("R_SPF_ALLOW",),
    recipients: Sequence[str] = RECIPIENTS,
    *,
    sender: FlaskClient | None = None,
) -> str:
    """Push ``content`` to the rspamd node for ``recipients``, report it (as ``sender``, by
    default a new visitor), run the worker: the release token of the first recipient's
    notification."""
    headers = exporter_headers(recipients=recipients)
    headers["X-Rspamd-symbols"] = "[" + ",".join(f'{{"name": "{s}", "score": 0.0}}' for s in symbols) + "]"
    before = stack.smtp.messages()
    assert push(stack.client, content, headers=headers).status_code == 200
    response = submit_report(sender or stack.new_client(), stack, report_path(stack, message_id_of(content), node=NODE))
    assert response.status_code == 303, response.text
    drain_due(stack.worker)
    # Only this report's notification: a stack that held others has theirs captured too.
    new = [m.message for m in stack.smtp.messages()
           if m.rcpt_tos[0] == recipients[0] and all(m is not old for old in before)]  # fmt: skip
    assert len(new) == 1, [m["Subject"] for m in new]
    return release_token_from(new[0])


def frame_url(page: str) -> str:
    """The address of the preview frame ``page`` embeds (it must embed one)."""
    found = FRAME.search(page)
    assert found, "the page embeds no sandboxed preview frame"
    return found.group(1).replace("&amp;", "&")


def held_on_halon(stack: Stack, content: bytes, address: str = RECIPIENTS[0]) -> tuple[str, str]:
    """``content`` held on the simulated Halon node for ``address`` and reported by its sender:
    (the transaction, the recipient's release token)."""
    tx = stack.sim.add_message("alerts@bank-verify.example", [address], "Account locked", raw=content)
    assert submit_report(stack.new_client(), stack, report_path(stack, tx)).status_code == 303
    drain_due(stack.worker)
    mails = [m.message for m in stack.smtp.messages() if m.rcpt_tos[0] == address]
    assert mails, [m.rcpt_tos for m in stack.smtp.messages()]
    return tx, release_token_from(mails[-1])


def release_link_for(stack: Stack, message_id: str, address: str = RECIPIENTS[0]) -> str:
    """A notified report with a release link for the rspamd node's copy of ``message_id`` to
    ``address``, written as the worker leaves it (no CAPTCHA, no mail): its release token."""
    now = datetime.now(UTC)
    with stack.services.db.session() as session:
        copy_id = session.scalar(
            select(StoredCopy.id)
            .join(StoredMessage)
            .where(StoredMessage.node == NODE, StoredMessage.message_id == message_id, StoredCopy.recipient == address)
        )
        assert copy_id is not None, f"no copy of {message_id} for {address}"
        nonce = links.new_token_nonce()
        token = links.release_token(stack.services.settings.app.secret_key, nonce)
        report = Report(node=NODE, message_id=message_id, link_issued_at=now, state="notified", comment="Genuine.",
                        sender_ip="192.0.2.1", envelope_sender=SENDER, subject="")  # fmt: skip
        report.recipients.append(
            Recipient(queue=copy_id, address=address, state="notified", token_nonce=nonce,
                      token_hash=links.token_hash(token), expires_at=now + timedelta(days=7), notified_at=now)
        )  # fmt: skip
        session.add(report)
        session.commit()
    return token


@dataclass
class PreviewSite:
    """An rspamd-backed stack served over real HTTP for a browser (see :func:`serve_previews`)."""

    stack: Stack
    url: str
    held: int = 0

    def hold(self, content: bytes, symbols: Sequence[str] = ("R_SPF_ALLOW",)) -> str:
        """Hold ``content`` and have a sender report it: the recipient's release page URL on
        this server. Each sender comes from its own address (TEST-NET-2), as senders do, so a
        corpus of reports stays under the per-address limits."""
        self.held += 1
        sender = self.stack.new_client()
        sender.environ_base["REMOTE_ADDR"] = f"198.51.100.{self.held % 250 + 1}"
        return f"{self.url}/release/{held_with_link(self.stack, content, symbols, sender=sender)}"


@contextmanager
def serve_previews(directory: Path) -> Iterator[PreviewSite]:
    """The app with one rspamd node (SQLite in ``directory``, the Halon simulator, SMTP and
    relay capture servers), served over plain HTTP on 127.0.0.1 from a thread; the two
    recipients may be notified of a whole corpus of messages in a day."""
    simulator = SimulatorServer(HalonSimulator(users={"release": "sim-password-0123"})).start()
    smtp, relay = CaptureServer().start(), CaptureServer().start()
    stack: Stack | None = None
    server = None
    try:
        stack = build_rspamd_stack(f"sqlite:///{directory / 'previews.sqlite3'}", simulator, smtp, relay.port,
                                   sections={"app": {"public_url": "http://127.0.0.1"},
                                             "limits": {"notifications_per_recipient_per_day": 100_000}})  # fmt: skip
        server = make_server("127.0.0.1", 0, stack.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="previews-http", daemon=True)
        thread.start()
        yield PreviewSite(stack, f"http://127.0.0.1:{server.server_port}")
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if stack is not None:
            close_stack(stack)
        relay.stop()
        smtp.stop()
        simulator.stop()
