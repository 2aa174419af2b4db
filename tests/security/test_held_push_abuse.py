"""Abuse of POST /gateway/v1/held and the report mail it leads to: replays and concurrent
duplicates (one mail per message), rotated-out keys, header injection through the subject or
sender, senders the email package cannot parse (failed at once, not retried for hours)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select

from release.config import I18nSettings
from release.core import links
from release.db.models import Job, SenderNotice
from release.devtools.mailcapture import CaptureServer
from release.devtools.simulator import SimulatorServer
from release.mail.ndr import HeldReport, build_ndr
from release.mail.templates import MailTemplates
from tests.support.held import build_halon6_stack, push, push_body
from tests.support.stack import Stack, close_stack

MESSAGE = "7c1e3d2a-6000-4000-8000-00000000abcd"


@pytest.fixture
def ndr_stack(database_url: str, simulator: SimulatorServer, smtp_server: CaptureServer) -> Iterator[Stack]:
    built = build_halon6_stack(database_url, simulator, smtp_server)
    yield built
    close_stack(built)


def rows(stack: Stack) -> tuple[int, int]:
    with stack.services.db.session() as session:
        notices = len(session.scalars(select(SenderNotice)).all())
        jobs = len(session.scalars(select(Job).where(Job.kind == "ndr")).all())
    return notices, jobs


def test_concurrent_duplicate_pushes_store_exactly_one(ndr_stack: Stack) -> None:
    """16 threads push the same message at once (a gateway retrying through two proxies):
    exactly one 202, the rest 200, one notice row, one ndr job, never a 500."""
    body = push_body(ndr_stack, MESSAGE)
    clients = [ndr_stack.new_client() for _ in range(16)]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def one(client: object) -> None:
        barrier.wait()
        statuses.append(push(client, body).status_code)  # type: ignore[arg-type]

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(statuses) == [200] * 15 + [202], statuses
    assert rows(ndr_stack) == (1, 1)


def test_rotated_out_key_and_other_nodes_message(ndr_stack: Stack) -> None:
    """A link signed with a key no longer configured: 400, nothing stored. A link for a
    reject-mode node: 403. The same message id under the other node: separate (403 here)."""
    old_key = "an-old-rotated-out-link-key-0123456789"
    t = int(time.time())
    rotated = {"n": "mx1", "m": MESSAGE, "t": t, "s": links.sign(old_key, "mx1", MESSAGE, t)}
    assert push(ndr_stack.client, rotated).status_code == 400
    assert push(ndr_stack.client, push_body(ndr_stack, MESSAGE, node="mx2")).status_code == 403
    assert rows(ndr_stack) == (0, 0)


def test_one_link_buys_one_report_whatever_the_replays(ndr_stack: Stack) -> None:
    """An attacker holding one valid link: every issued_at variant needs a new signature, so
    replays of the one link, with extra whitespace/case variants, add nothing."""
    body = push_body(ndr_stack, MESSAGE)
    assert push(ndr_stack.client, body).status_code == 202
    for variant in (body, {**body, "t": str(body["t"])}, {**body, "m": MESSAGE.upper()}, {**body, "n": "MX1"}):
        assert push(ndr_stack.client, variant).status_code in (200, 400)
    assert rows(ndr_stack) == (1, 1)


@pytest.mark.parametrize(
    "subject",
    ["hi\r\nBcc: victim@evil.example", "hi\x85Bcc: v@evil.example", "hi\u2028Bcc: v@evil.example", "=?utf-8?q?x?="],
)
def test_ndr_subject_cannot_add_a_header(subject: str) -> None:
    report = HeldReport(
        to_address="anna@partner.example",
        recipients=["alice@example.com", "bob@example.com\r\nBcc: x@evil.example"],
        subject=subject,
        received_at=datetime.now(UTC),
        report_url="https://release.example.test/report?n=mx1",
        valid_until=datetime.now(UTC) + timedelta(hours=24),
        hours=24,
        reporting_host="release.example.test",
        message_id="<ndr-x@release.example.test>",
    )
    env = MailTemplates(I18nSettings()).for_address("anna@partner.example")
    msg = build_ndr(report, sender="Release <release@example.test>", jinja_env=env)
    parsed = message_from_bytes(msg.as_bytes(policy=policy.SMTP), policy=policy.default)
    assert parsed.get_all("Bcc") is None
    assert [str(v) for v in parsed.get_all("To") or []] == ["anna@partner.example"]


@pytest.mark.parametrize(
    "sender",
    ["anna@partner.example\r\nBcc: v@evil.example", "anna@partner.example, v@evil.example", "<v@evil.example>",
     "anna@partner.example\u2028Bcc: v@evil.example", '"a@b"@partner.example'],
)  # fmt: skip
def test_ndr_sender_is_one_bare_address_or_refused(sender: str) -> None:
    report = HeldReport(sender, ["alice@example.com"], "s", None, "https://r.example/report", datetime.now(UTC), 24,
                        "release.example.test", "<ndr-x@release.example.test>")  # fmt: skip
    env = MailTemplates(I18nSettings()).for_address("anna@partner.example")
    try:
        msg = build_ndr(report, sender="Release <release@example.test>", jinja_env=env)
    except ValueError:
        return
    to = msg.get_all("To") or []
    assert len(to) == 1 and len(to[0].addresses) == 1 and "evil" not in str(to[0]), to


def test_clock_skew_is_unbounded_so_a_link_can_outlive_its_purged_notice() -> None:
    """links.clock_skew_seconds has no bound in validation; with a skew above
    record_days - short_hours a link stays valid after retention purged its notice, and a
    replay then queues a second report for the same message."""
    from release.config.validation import validate
    from tests.support.config import make_settings

    settings = make_settings("sqlite:///:memory:")
    skewed = dataclasses.replace(settings, links=dataclasses.replace(settings.links, clock_skew_seconds=10**9))
    with pytest.raises(ValueError, match="clock_skew"):
        validate(skewed)


def test_a_sender_the_email_package_cannot_parse_fails_at_once_not_15_retries(
    database_url: str, smtp_server: CaptureServer
) -> None:
    """Envelope sender "a@b"@partner.example as a node lists it (localpart a@b): Address()
    raises HeaderParseError, which is not the ValueError the ndr step expects, so the job is
    retried as a crash (max_attempts, with back-off up to 15 minutes in production) instead of
    finishing FAILED at once with "cannot build the report"."""
    from release.devtools.simulator import HalonSimulator
    from tests.support.held import build_stack_with_nodes
    from tests.support.stack import drain_due

    with SimulatorServer(HalonSimulator(generation=6)) as server:
        stack = build_stack_with_nodes(
            database_url, server, smtp_server, server.node_settings("mx1", sender_notice="ndr")
        )
        try:
            tx = server.sim.add_message("a@b@partner.example", ["alice@example.com"], "hi", quarantine="qid=1day")
            assert push(stack.client, push_body(stack, tx)).status_code == 202
            drain_due(stack.worker, horizon=5)
            with stack.services.db.session() as session:
                notice = session.scalars(select(SenderNotice)).one()
                job = session.scalars(select(Job).where(Job.kind == "ndr")).one()
                state, error, attempts = notice.state, notice.error, job.attempts
        finally:
            close_stack(stack)
    print(state, attempts, error)
    assert smtp_server.messages() == []
    assert attempts == 1, f"the ndr job ran {attempts} times: {error}"
    assert error and "cannot build the report" in error
