"""GET and HEAD never change state: after a full flow, crawl every GET route of the app
with valid tokens and links (mail link scanners fetch every link) and compare the database
and the simulator before and after."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

from release.core import links
from release.devtools.mailcapture import text_and_html
from release.gateway.halon import PROBE_PREFIX
from release.paths import STATIC
from tests.support.snapshots import db_snapshot, sim_snapshot
from tests.support.stack import Stack, StackFactory, drain_due
from tests.support.visitor import csrf_token, release_token_from, report_path, submit_report

STATIC_SAMPLES = ["css/app.css", "js/status.js", "vendor/altcha/altcha.umd.js", "no-such-file.css"]


def full_flow(stack: Stack) -> tuple[list[str], list[str]]:
    """Two reports; one recipient released, one notified only, one report not yet reported.

    Returns the release tokens and the report-link query strings to crawl with."""
    reported = stack.sim.add_message("a@partner.example", ["alice@example.com", "bob@example.com"], "Notes")
    unreported = stack.sim.add_message("b@partner.example", ["carol@example.com"], "Not reported yet")
    not_found = stack.sim.add_message("c@partner.example", ["dave@example.com"], "Gone")
    client = stack.new_client()
    assert submit_report(client, stack, report_path(stack, reported)).status_code == 303
    assert submit_report(client, stack, report_path(stack, not_found)).status_code == 303
    stack.sim.remove(not_found)
    drain_due(stack.worker)
    mails = {m.rcpt_tos[0]: m.message for m in stack.smtp.messages()}
    tokens = [release_token_from(mails["alice@example.com"]), release_token_from(mails["bob@example.com"])]
    page = client.get(f"/release/{tokens[0]}")
    assert client.post(f"/release/{tokens[0]}", data={"csrf_token": csrf_token(page.text)}).status_code == 303
    drain_due(stack.worker)
    assert "Released" in client.get(f"/release/{tokens[0]}").text
    settings = stack.services.settings
    expired = links.build_report_url(settings.app.public_url, settings.links.keys[0], "mx1", reported, 1_000_000)
    queries = [urlsplit(report_path(stack, tx)).query for tx in (reported, unreported, not_found)]
    queries += [urlsplit(expired).query, "n=mx1&m=x&t=1&s=bad"]
    text_and_html(mails["bob@example.com"])  # the mail parses (the crawl uses its token)
    return tokens, queries


def urls_for(stack: Stack, tokens: list[str], queries: list[str]) -> tuple[list[str], set[str]]:
    """Every GET route filled with real values (demo routes skipped); and their endpoints."""
    urls: list[str] = []
    endpoints: set[str] = set()
    for rule in stack.app.url_map.iter_rules():
        if "GET" not in (rule.methods or set()) or rule.endpoint.startswith("demo."):
            continue
        endpoints.add(rule.endpoint)
        variants: list[dict[str, object]] = [{}]
        for arg in sorted(rule.arguments):
            converter = type(rule._converters[arg]).__name__  # noqa: SLF001
            if arg == "token":
                values: list[object] = [*tokens, "A" * 43, "short"]
            elif arg == "filename":
                values = list(STATIC_SAMPLES)
            elif converter in ("IntegerConverter", "FloatConverter", "IdConverter"):
                values = [1, 2, 999]
            else:
                values = ["x"]
            variants = [{**v, arg: value} for v in variants for value in values]
        with stack.app.test_request_context():
            for v in variants:
                path = stack.app.url_for(rule.endpoint, **v)  # type: ignore[arg-type]
                if rule.endpoint.startswith("sender.report"):
                    urls.extend(f"{path}?{q}" for q in queries)
                else:
                    urls.append(path)
                    urls.extend(f"{path}?{q}" for q in queries[:1])  # a stray query changes nothing
    return urls, endpoints


def state_calls(stack: Stack) -> list[object]:
    """Gateway requests other than health probes (a list of an unknown id, for /readyz)."""
    return [r for r in stack.sim.requests_log if PROBE_PREFIX not in json.dumps(r.body)]


def test_get_and_head_never_change_state(make_stack: StackFactory) -> None:
    stack = make_stack()
    tokens, queries = full_flow(stack)
    before_db, before_sim = db_snapshot(stack), sim_snapshot(stack)
    before_calls, before_mail = len(state_calls(stack)), len(stack.smtp.messages())
    urls, endpoints = urls_for(stack, tokens, queries)
    assert {"sender.report", "recipient.show", "recipient.status", "static"} <= endpoints
    started = time.perf_counter()
    statuses: dict[int, int] = {}
    for url in urls:
        for method in ("GET", "HEAD"):
            client = stack.new_client()  # a fresh scanner every time, like a mail security gateway
            response = client.open(url, method=method)
            assert response.status_code < 500, (method, url, response.status_code)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    # Give a (wrongly) triggered job the chance to run before comparing.
    drain_due(stack.worker)
    print(
        f"crawled {len(urls)} URLs x GET/HEAD over {len(endpoints)} GET endpoints in "
        f"{time.perf_counter() - started:.1f}s; statuses {dict(sorted(statuses.items()))}"
    )
    assert db_snapshot(stack) == before_db
    assert sim_snapshot(stack) == before_sim
    assert len(state_calls(stack)) == before_calls  # no queue call from any GET (/readyz reads the licence)
    assert len(stack.smtp.messages()) == before_mail


def test_static_samples_exist() -> None:
    for name in STATIC_SAMPLES[:-1]:
        assert (STATIC / name).is_file(), name
