"""Format characters from strangers (bidi controls such as U+202E, the rest of Unicode's
category Cf, line and paragraph separators) never reach a page raw: "gnp.exe" must not
display as "exe.png". Each becomes a visible U+FFFD inside an element whose title says
that characters were replaced. The gateway's subject and sender, the sender's comment,
the addresses, and everything the audit log keeps, on the release page and in the console.
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import select

from release.core import history
from release.db.models import Recipient
from release.db.states import RecipientState
from release.web import untrusted
from release.web.admin import auth
from tests.support.console import ADMIN, Console
from tests.support.stack import StackFactory
from tests.support.visitor import release_token_from, report_path, submit_report

RLO = "\u202e"
SUBJECT = f"Invoice {RLO}gnp.exe"
SENDER = f"anna{RLO}moc.evil@partner{RLO}.example"
COMMENT = f"Please open {RLO}fdp.exe\u2028and the\u2066isolate\u2069 too.\nThanks"
RECIPIENT = "rita@example.com"
HIDING = ("Cf", "Zl", "Zp")
NOTE = "replaced with"


def hiding(text: str) -> list[str]:
    """The characters in ``text`` that can change how the text around them displays."""
    return sorted({f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) in HIDING})


def assert_neutralised(page: str, *shown: str) -> None:
    assert hiding(page) == [], hiding(page)
    assert "\ufffd" in page and NOTE in page
    for text in shown:
        assert untrusted.neutralise(text) in page.replace("&#34;", '"'), text


def test_the_filter_marks_every_hiding_character() -> None:
    assert untrusted.neutralise(SUBJECT) == "Invoice \ufffdgnp.exe"
    assert untrusted.neutralise("a\u200bb\ufeffc\U000e0041d\x1be\u2029f") == "a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf"
    for kept in ("plain", "line\nbreak\tand\r\n", "Grüße 😀", "\u00a0nbsp", "עברית", "\ufffd"):
        assert untrusted.neutralise(kept) == kept
    marked = str(untrusted.untrusted_filter(f"<b>{RLO}x"))
    assert re.fullmatch(
        r'<span class="neutralised" title="[^"<>]*replaced with[^"<>]*">&lt;b&gt;\ufffdx</span>', marked
    )
    assert str(untrusted.untrusted_filter("<b>x")) == "&lt;b&gt;x"
    assert str(untrusted.untrusted_filter(None)) == ""


def test_release_page_and_console_show_no_hiding_characters(make_stack: StackFactory) -> None:
    stack = make_stack()
    tx = stack.sim.add_message(SENDER, [RECIPIENT], SUBJECT)
    assert submit_report(stack.new_client(), stack, report_path(stack, tx), COMMENT).status_code == 303
    stack.worker.drain()
    token = release_token_from(stack.smtp.messages()[-1].message)
    release_page = stack.new_client().get(f"/release/{token}")
    assert release_page.status_code == 200
    assert_neutralised(release_page.text, SUBJECT, SENDER)
    assert "Please open \ufffdfdp.exe\ufffdand the\ufffdisolate\ufffd too.\nThanks" in release_page.text

    with stack.services.db.session() as session:
        auth.create_admin(session, ADMIN[0], ADMIN[1], "admin", actor="test")
        history.audit(session, f"sso{RLO}user", "test.entry", f"admin:{RLO}x", f"detail {RLO}gnp.exe")
        copy = session.scalar(select(Recipient))
        assert copy is not None
        copy.state = RecipientState.APPROVAL_PENDING
        report_id = copy.report_id
        session.commit()
    client = Console(stack).login()
    for path in (f"/admin/reports/{report_id}", "/admin/reports", "/admin/approvals", "/admin/audit", "/admin/stats"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert_neutralised(page.text)
