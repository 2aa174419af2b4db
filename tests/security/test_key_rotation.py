"""Link key rotation through the app: the first key signs, every listed key verifies; a key
taken off the list stops working."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from release.core import links
from tests.support.stack import Stack, StackFactory
from tests.support.visitor import submit_report

OLD = "old-gateway-link-key-0123456789abcdef"
NEW = "new-gateway-link-key-0123456789abcdef"


def path_signed_with(stack: Stack, key: str, message_id: str) -> str:
    url = links.build_report_url("https://x", key, "mx1", message_id, int(time.time()) - 60)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_previous_key_works_until_removed(make_stack: StackFactory) -> None:
    before = make_stack(links={"keys": [OLD]})
    during = make_stack(links={"keys": [NEW, OLD]})  # rotation: new signs, old still verifies
    after = make_stack(links={"keys": [NEW]})  # old key retired
    tx = before.sim.add_message("a@partner.example", ["r@example.com"], "Hi")
    old_link, new_link = path_signed_with(before, OLD, tx), path_signed_with(before, NEW, tx)

    assert before.client.get(old_link).status_code == 200
    assert before.client.get(new_link).status_code == 400  # the gateway must not switch first

    assert during.client.get(new_link).status_code == 200
    assert during.client.get(old_link).status_code == 200  # mail rejected before the rotation
    assert submit_report(during.new_client(), during, old_link).status_code == 303  # and it can be used

    fresh = before.sim.add_message("a@partner.example", ["r@example.com"], "Not reported")
    retired = after.client.get(path_signed_with(after, OLD, fresh))
    assert retired.status_code == 400 and "signature does not match" in retired.text
    assert after.client.get(path_signed_with(after, NEW, fresh)).status_code == 200
    assert after.client.get(old_link).status_code == 400  # even for the report made with it
    assert after.client.get(new_link).status_code == 200  # the status page, via the new key
    assert after.client.get(old_link.replace("/report?", "/report/status?")).status_code == 400
