"""Markup from strangers (comment, subject, sender) is inert in every page and in the HTML
mail; CR/LF in the subject, sender or recipient never creates a mail header."""

from __future__ import annotations

from html.parser import HTMLParser

from sqlalchemy import select

from release.db.models import Recipient
from release.devtools.mailcapture import text_and_html
from tests.support.stack import Stack, StackFactory
from tests.support.visitor import release_token_from, report_path, submit_report

PAYLOAD_SUBJECT = '<img src=x onerror=alert(1)>"><script>alert(2)</script>'
PAYLOAD_SENDER = '"><script>alert(3)</script><img src=x onerror=alert(4)>@evil.example'
PAYLOAD_COMMENT = (
    "</blockquote><img src=x onerror=alert(5)>\"><script>alert(6)</script><a href='javascript:alert(7)'>x</a>"
)
BENIGN = ("Quarterly figures", "anna@partner.example", "We met at the fair last week.")


class Structure(HTMLParser):
    """Elements (tag + attribute names), every attribute value, and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, tuple[str, ...]]] = []
        self.values: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, tuple(sorted(name for name, _ in attrs))))
        self.values.extend(v or "" for _, v in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def run_flow(stack: Stack, subject: str, sender: str, comment: str, recipient: str) -> tuple[str, str, str]:
    """Report, notify; return the release page, the sender's status page and the mail HTML."""
    tx = stack.sim.add_message(sender, [recipient], subject)
    path = report_path(stack, tx)
    client = stack.new_client()
    assert submit_report(client, stack, path, comment).status_code == 303
    stack.worker.drain()
    (mail,) = [m.message for m in stack.smtp.messages() if m.rcpt_tos == (recipient,)]
    _text, html = text_and_html(mail)
    assert html is not None
    release_page = stack.new_client().get(f"/release/{release_token_from(mail)}")
    status_page = client.get(path)
    assert release_page.status_code == 200 and status_page.status_code == 200
    return release_page.text, status_page.text, html


def assert_inert(hostile: str, benign: str, *, shown: list[str]) -> None:
    page, baseline = Structure(hostile), Structure(benign)
    # Same elements and attributes as with harmless input: nothing came from the input.
    assert page.elements == baseline.elements
    assert not any(name.startswith("on") for _, names in page.elements for name in names)
    assert not any("alert(" in v or "javascript:" in v.lower() for v in page.values)
    text = "".join(page.text)
    for fragment in shown:  # the stranger's text is shown as text, not dropped
        assert fragment in text, fragment


def test_markup_is_inert_in_pages_and_mail(make_stack: StackFactory) -> None:
    stack = make_stack()
    hostile = run_flow(stack, PAYLOAD_SUBJECT, PAYLOAD_SENDER, PAYLOAD_COMMENT, "alice@example.com")
    benign = run_flow(stack, *BENIGN, "bob@example.com")
    release_page, status_page, mail_html = hostile
    assert_inert(release_page, benign[0], shown=[PAYLOAD_SUBJECT, PAYLOAD_SENDER, PAYLOAD_COMMENT])
    assert_inert(status_page, benign[1], shown=[])
    # The mail bounds and defangs the subject and sender; what is left must be plain text.
    assert_inert(mail_html, benign[2], shown=["<img src=x onerror=alert(1)>", "<script>alert(3)</script>"])
    assert "alert(5)" not in mail_html  # and the comment never goes into a mail at all
    for html in hostile:
        assert "<script>alert" not in html and "<img src=x" not in html


ALLOWED_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "auto-submitted",
    "x-auto-response-suppress",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}


def test_crlf_never_creates_a_mail_header(make_stack: StackFactory) -> None:
    stack = make_stack()
    evil = "evil@attacker.example"
    subject = f"Invoice\r\nBcc: {evil}\r\nX-Injected: subject\n\nbody\rX-Cr: 1"
    sender = f"anna@partner.example\r\nBcc: {evil}\nX-Injected: sender"
    recipients = ["carol@example.com", f"dave@example.com\r\nBcc: {evil}", "erin@example.com\nX-Injected: rcpt"]
    tx = stack.sim.add_message(sender, recipients, subject)
    assert submit_report(stack.new_client(), stack, report_path(stack, tx), "hi\r\nBcc: x@y.example").status_code == 303
    stack.worker.drain()
    captured = stack.smtp.messages()
    assert [m.rcpt_tos for m in captured] == [("carol@example.com",)]  # the CR/LF recipients were refused
    message = captured[0].message
    names = {name.lower() for name in message.keys()}
    assert names <= ALLOWED_HEADERS, names - ALLOWED_HEADERS
    for part in message.walk():
        assert {name.lower() for name in part.keys()} <= ALLOWED_HEADERS
    assert message.get_all("Bcc") is None and message.get_all("X-Injected") is None
    header = str(message["Subject"])
    assert "\r" not in header and "\n" not in header and "Invoice Bcc: evil@attacker[.]example" in header
    assert evil not in message.as_string()  # defanged wherever it is shown
    with stack.services.db.session() as session:
        states = {r.address.split()[0]: r.state for r in session.scalars(select(Recipient))}
    assert states == {"carol@example.com": "notified", "dave@example.com": "failed", "erin@example.com": "failed"}
