"""Demo mode on each Halon generation, clicked through over real HTTP as a newcomer would:
the report link, the form with its proof of work, the recipient's mail, the release."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from release.devtools.demo import DemoRuntime, start_demo
from tests.support.altcha import solve_altcha
from tests.support.visitor import csrf_token, release_token_from, wait_until


@pytest.fixture(params=["halon6", "halon5"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DemoRuntime]:
    demo = start_demo(host="127.0.0.1", port=0, instance=tmp_path / "instance", gateway=request.param)
    thread = threading.Thread(target=demo.serve_forever, name="demo-http", daemon=True)
    thread.start()
    try:
        yield demo
    finally:
        demo.stop()
        thread.join(timeout=10)


def test_report_then_release_on_either_generation(runtime: DemoRuntime) -> None:
    node = runtime.app.extensions["release"].settings.node("mx1")
    generation = runtime.simulator.sim.generation
    assert (node.type, generation) in (("halon6", 6), ("halon5", 5))
    index = requests.get(runtime.url + "/demo/", timeout=10)
    assert f"Halon {generation}.x gateway simulator" in index.text
    subject, link = runtime.report_links()[0]
    transaction = runtime.transactions[0]

    sender = requests.Session()
    form = sender.get(link, timeout=10)
    assert form.status_code == 200 and subject not in form.text  # the sender page shows no content
    challenge = sender.get(runtime.url + "/captcha/altcha-challenge", timeout=10).json()
    data = {"csrf_token": csrf_token(form.text), "comment": "Our March invoice.", "altcha": solve_altcha(challenge)}
    sent = sender.post(link, data=data, headers={"Referer": link}, allow_redirects=False, timeout=10)
    assert sent.status_code == 303, sent.text
    assert wait_until(lambda: runtime.mailbox.messages(), timeout=10)
    assert {c.quarantine for c in runtime.simulator.sim.copies(transaction)} == {node.long_quarantine}

    token = release_token_from(runtime.mailbox.messages()[0].message)
    recipient = requests.Session()
    page = recipient.get(f"{runtime.url}/release/{token}", timeout=10)
    assert page.status_code == 200 and "Our March invoice." in page.text
    released = recipient.post(
        f"{runtime.url}/release/{token}",
        data={"csrf_token": csrf_token(page.text)},
        headers={"Referer": f"{runtime.url}/release/{token}"},
        allow_redirects=False,
        timeout=10,
    )
    assert released.status_code == 303, released.text
    assert wait_until(lambda: [c.state for c in runtime.simulator.sim.copies(transaction)] == ["delivered"], 10)


def test_an_unknown_demo_gateway_is_refused_in_plain_words(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DEMO_GATEWAY must be one of halon6, halon5"):
        start_demo(host="127.0.0.1", port=0, instance=tmp_path / "instance", gateway="bogus")
