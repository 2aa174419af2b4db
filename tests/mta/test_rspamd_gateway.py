"""The Rspamd gateway side (docs/rspamd/) on real daemons: Postfix hands each message to
Rspamd's milter, the rule pushes a rejected message to the service and puts a signed report
link into the 5xx; a push that fails defers (4xx); the re-injection listener delivers a
released message untouched; learn-ham raises Rspamd's learned count."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import smtplib
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from release.core import links
from release.devtools.mailcapture import free_port
from tests.support.mta import (
    DOCS,
    GTUBE,
    LINK,
    PREFILTER_SPAM,
    RECIPIENTS,
    SCORE_SPAM,
    SENDER,
    GatewaySettings,
    Mta,
    PushReceiver,
    message,
    send,
)

pytestmark = pytest.mark.mta

RULE = DOCS / "plugins.d" / "sender_fp_release.lua"
PUSH_PATH = "/gateway/v1/rspamd/mx3"


def link_of(reply: str) -> dict[str, str]:
    found = LINK.findall(reply)
    assert len(found) == 1, reply
    return dict(parse_qsl(urlsplit(found[0]).query))


def verify(params: dict[str, str], mta: Mta) -> links.ReportLink:
    return links.verify(
        params, keys=[mta.settings.link_key], nodes=[mta.settings.node], max_age_seconds=3600, now=time.time()
    )


@pytest.mark.parametrize("spam", [SCORE_SPAM, PREFILTER_SPAM], ids=["by-score", "by-pre-result"])
def test_a_rejected_message_gets_a_signed_link_and_is_pushed(mta: Mta, push: PushReceiver, spam: str) -> None:
    raw = message(f"Offer {spam}", spam=spam)
    code, reply = send(mta.smtp_port, raw)

    assert code == 554 and reply.startswith("5.7.1 Message rejected as spam. If it is legitimate, report it: ")
    assert "\n" not in reply and len(reply) < 400  # one reply line, well inside SMTP's 512
    url = LINK.findall(reply)[0]
    params = link_of(reply)
    assert list(params) == list(links.FIELDS)  # n, m, t, s in this order
    link = verify(params, mta)
    assert (link.node, abs(link.issued_at - time.time()) < 60) == ("mx3", True)
    # Exactly the link the service itself would build for these fields.
    assert url == links.build_report_url(
        mta.settings.public_url, mta.settings.link_key, link.node, link.message_id, link.issued_at
    )

    [pushed] = push.requests
    assert pushed.path == PUSH_PATH
    credentials = f"{mta.settings.node}:{mta.settings.push_password}".encode()
    assert pushed.headers["Authorization"] == "Basic " + base64.b64encode(credentials).decode()
    assert hashlib.sha256(pushed.body).hexdigest()[:32] == link.message_id
    assert pushed.body.endswith(raw.split(b"\r\n", 1)[1])  # the message as sent (headers may be added)
    assert pushed.headers["X-Rspamd-from"] == SENDER
    assert json.loads(pushed.headers["X-Rspamd-rcpt"]) == list(RECIPIENTS)
    assert re.fullmatch(r"[0-9A-F]{6,}", pushed.headers["X-Rspamd-qid"])  # Postfix's queue id
    assert pushed.headers["X-Rspamd-action"] == "reject"
    # The score so far: a pre-result decides the action without raising it.
    assert float(pushed.headers["X-Rspamd-score"]) >= (15 if spam == SCORE_SPAM else -1)
    symbols = {s["name"] for s in json.loads(pushed.headers["X-Rspamd-symbols"])}
    assert {"TEST_SPAM_SCORE" if spam == SCORE_SPAM else "TEST_SPAM_PREFILTER"} <= symbols


def test_the_same_message_sent_again_has_the_same_message_id(mta: Mta, push: PushReceiver) -> None:
    raw = message("Offer sent twice", spam=SCORE_SPAM)
    first, second = (link_of(send(mta.smtp_port, raw)[1]) for _ in range(2))
    assert first["m"] == second["m"]
    assert [hashlib.sha256(p.body).hexdigest()[:32] for p in push.requests] == [first["m"]] * 2


def test_a_clean_message_is_delivered_and_not_pushed(mta: Mta, push: PushReceiver) -> None:
    raw = message("Lunch")
    assert send(mta.smtp_port, raw) == (250, "")
    delivered = mta.delivered.wait(lambda m: b"Subject: Lunch\r\n" in m.raw)
    assert (delivered.mail_from, delivered.rcpt_tos) == (SENDER, RECIPIENTS)
    assert delivered.raw.endswith(raw.split(b"\r\n", 1)[1])
    assert push.requests == []


@pytest.mark.parametrize("status", [500, 401, 413, 400])
def test_a_failed_push_defers_the_message(mta: Mta, push: PushReceiver, status: int) -> None:
    push.status = status
    code, reply = send(mta.smtp_port, message(f"Offer while the service answers {status}", spam=PREFILTER_SPAM))
    assert (code, reply) == (451, "4.7.1 Message held for review, please try again later")
    assert len(push.requests) == 1


def test_a_service_that_is_down_defers_the_message(mta: Mta, push: PushReceiver) -> None:
    working = mta.settings.push_url
    mta.configure(push_url=f"https://127.0.0.1:{free_port()}{PUSH_PATH}")  # nothing listens there
    try:
        code, reply = send(mta.smtp_port, message("Offer while the service is down", spam=SCORE_SPAM))
    finally:
        mta.configure(push_url=working)
    assert (code, reply) == (451, "4.7.1 Message held for review, please try again later")
    assert push.requests == []


def test_a_service_certificate_that_does_not_match_defers_the_message(mta: Mta, push: PushReceiver) -> None:
    """Rspamd verifies the service's certificate: it is for 127.0.0.1, not for localhost."""
    working = mta.settings.push_url
    assert working.startswith("https://127.0.0.1:")
    mta.configure(push_url=working.replace("127.0.0.1", "localhost"))
    try:
        code, reply = send(mta.smtp_port, message("Offer to a wrong certificate", spam=SCORE_SPAM))
        logged = [line for line in mta.rspamd_log.read_text().splitlines() if "push of" in line][-1]
    finally:
        mta.configure(push_url=working)
    assert (code, reply) == (451, "4.7.1 Message held for review, please try again later")
    assert "failed: peer certificate fails hostname verification for localhost; deferring" in logged
    assert push.requests == []


def test_a_push_slower_than_the_timeout_defers_the_message(mta: Mta, push: PushReceiver) -> None:
    mta.configure(timeout=1)
    push.delay = 2
    try:
        code, reply = send(mta.smtp_port, message("Offer while the service is slow", spam=SCORE_SPAM))
    finally:
        push.delay = 0
        mta.configure(timeout=GatewaySettings.timeout)
    assert (code, reply) == (451, "4.7.1 Message held for review, please try again later")


def test_postfix_defers_while_rspamd_is_down(mta: Mta, push: PushReceiver) -> None:
    """milter_default_action = tempfail: no scan, no delivery, and the sender retries."""
    with mta.rspamd_down():
        code, reply = send(mta.smtp_port, message("Lunch while Rspamd is down"))
    assert (code, reply) == (451, "4.7.1 Service unavailable - try again later")
    time.sleep(0.5)
    assert not [m for m in mta.delivered.messages() if b"while Rspamd is down" in m.raw]


def test_a_message_over_max_size_gets_a_plain_reject(mta: Mta, push: PushReceiver) -> None:
    body = "Too big to keep. " * (mta.settings.max_size // 16)
    code, reply = send(mta.smtp_port, message("Big offer", spam=PREFILTER_SPAM, body=body))
    assert (code, reply) == (554, "5.7.1 Test prefilter reject")  # the rule that rejected, no link
    assert push.requests == []


def test_a_link_too_long_for_one_smtp_line_disables_the_rule(mta: Mta, push: PushReceiver) -> None:
    """RFC 5321: 512 octets per reply line; Postfix would pass a longer one on unchanged."""
    working = mta.settings.public_url
    mta.configure(public_url="https://release.example.com/" + "x" * 300)
    try:
        code, reply = send(mta.smtp_port, message("Offer with a long link", spam=PREFILTER_SPAM))
        disabled = "module disabled" in mta.rspamd_log.read_text()
    finally:
        mta.configure(public_url=working)
    assert (code, reply, disabled) == (554, "5.7.1 Test prefilter reject", True)
    assert push.requests == []


def test_gtube_is_rejected_before_any_rule_runs(mta: Mta, push: PushReceiver) -> None:
    """Rspamd flags a GTUBE message "skip": no Lua rule runs, so no link and no push."""
    code, reply = send(mta.smtp_port, message("GTUBE", body=GTUBE))
    assert (code, reply) == (554, "5.7.1 Gtube pattern")
    assert push.requests == []


def test_the_reinjection_listener_delivers_unchanged_without_the_milter(mta: Mta, push: PushReceiver) -> None:
    raw = message("Released offer", spam=SCORE_SPAM)  # rejected if Rspamd saw it
    assert send(mta.relay_port, raw) == (250, "")
    delivered = mta.delivered.wait(lambda m: b"Subject: Released offer\r\n" in m.raw)
    assert (delivered.mail_from, delivered.rcpt_tos) == (SENDER, RECIPIENTS)
    assert delivered.raw.endswith(raw)
    added = delivered.raw[: -len(raw)].split(b"\r\n")[:-1]
    # Only Postfix's own Received header (folded over several lines) was added.
    assert added[0].startswith(b"Received: ") and all(line[:1] in (b" ", b"\t") for line in added[1:])
    assert push.requests == []


def outside_address() -> str:
    """This host's address on its default route: a client not in the listener's mynetworks."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # no packet is sent; only a route is picked
        except OSError:
            pytest.skip("no non-loopback IPv4 address to connect from")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("no non-loopback IPv4 address to connect from")
    return address


def test_the_reinjection_listener_refuses_clients_outside_mynetworks(mta: Mta, push: PushReceiver) -> None:
    with smtplib.SMTP("127.0.0.1", mta.relay_port, timeout=30, source_address=(outside_address(), 0)) as client:
        client.ehlo("outside.example.org")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail(SENDER, list(RECIPIENTS), message("Injected from outside"))
    codes = {code for code, _ in refused.value.recipients.values()}
    assert codes == {554}
    assert b"Client host rejected: Access denied" in next(iter(refused.value.recipients.values()))[1]


def test_learn_ham_raises_the_learned_count(mta: Mta, redis_url: str) -> None:
    body = " ".join(f"word{i} meeting notes agenda budget" for i in range(20))
    raw = message(f"Notes {time.time()}", body=body)
    before = mta.learned()
    url = f"{mta.controller_url}/learnham"
    refused = requests.post(url, data=raw, timeout=30)
    assert refused.status_code == 401  # the controller wants its password, even from loopback
    answer = requests.post(url, data=raw, headers={"Password": mta.controller_password}, timeout=30)
    assert (answer.status_code, answer.json()) == (200, {"success": True})
    assert mta.learned() == before + 1


def rule_function(*lua_args: str) -> str:
    """Run the installed rule's pure functions in Rspamd's own Lua (rspamadm lua)."""
    script = "local rule = dofile(arg[1]); print(rule[arg[2]](arg[3], arg[4], arg[5], tonumber(arg[6])))"
    with_args = [a for arg in (str(RULE), *lua_args) for a in ("-a", arg)]
    done = subprocess.run(
        ["rspamadm", "lua", "-b", *with_args, "-e", script], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


def pinned_vector() -> dict[str, str]:
    found = dict(re.findall(r'\b(key|n|m|t|s) = "([^"]*)"', RULE.read_text()))
    assert set(found) == {"key", "n", "m", "t", "s"}, found
    return found


def test_the_rule_signs_the_pinned_vector_like_the_service(mta: Mta) -> None:
    v = pinned_vector()
    assert links.sign(v["key"], v["n"], v["m"], int(v["t"])) == v["s"]
    assert rule_function("sign", v["key"], v["n"], v["m"], v["t"]) == v["s"]
    long_key = "k" * 100  # longer than SHA-256's block: HMAC hashes the key first
    assert rule_function("sign", long_key, "mx3", v["m"], v["t"]) == links.sign(long_key, "mx3", v["m"], int(v["t"]))


def test_the_rule_derives_the_message_id_like_the_service(mta: Mta) -> None:
    raw = Path(__file__).read_text()[:500]
    assert rule_function("message_id", raw) == hashlib.sha256(raw.encode()).hexdigest()[:32]
