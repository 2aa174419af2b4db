"""The simulator's page and its POST /messages form against a hostile browser."""

from __future__ import annotations

from werkzeug.test import Client

from release.devtools.simulator import HalonSimulator

HOST = "127.0.0.1:8025"
FORM = {"sender": "a@partner.example", "recipients": "b@example.test", "subject": "hi"}


def client() -> tuple[HalonSimulator, Client]:
    sim = HalonSimulator(generation=6, api_keys=["k" * 32])
    return sim, Client(sim.app)


def post(c: Client, data: dict[str, str], **headers: str):  # type: ignore[no-untyped-def]
    return c.post("/messages", data=data, headers={"Host": HOST, **headers})


def test_stored_markup_is_shown_escaped() -> None:
    sim, c = client()
    evil = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    assert post(c, {"sender": evil + "@x", "recipients": "b@example.test", "subject": evil}).status_code == 303
    page = c.get("/", headers={"Host": HOST})
    assert "<script>" not in page.text and "<img" not in page.text
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none': no script


def test_cross_site_posts_are_refused() -> None:
    sim, c = client()
    assert post(c, FORM, Origin="https://evil.example").status_code == 403
    assert post(c, FORM, Origin="null").status_code == 403
    assert post(c, FORM, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert post(c, FORM, **{"Sec-Fetch-Site": "same-site"}).status_code == 403
    assert sim.items() == []


def test_huge_and_control_character_input_is_refused() -> None:
    sim, c = client()
    assert post(c, {**FORM, "subject": "x" * 200_000}).status_code == 413
    assert post(c, {**FORM, "subject": "x" * 999}).status_code == 400
    assert post(c, {**FORM, "recipients": ",".join(f"r{i}@example.test" for i in range(21))}).status_code == 400
    for bad in ("a\r\nBcc: x@evil", "a\x00b", "a\u202eb", "a\u200bb", "\x1b[2Ja"):
        assert post(c, {**FORM, "subject": bad}).status_code == 400, repr(bad)
    assert sim.items() == []


def test_dns_rebinding_cannot_post_or_read() -> None:
    # A page at http://rebind.evil.example:8025 whose name now resolves to 127.0.0.1: the browser
    # sends Origin and Host of that name, which agree, so the same-origin test passes. The
    # simulator answers any Host, so the page can also read `/` (every held copy and its link).
    sim, c = client()
    evil = "rebind.evil.example:8025"
    posted = c.post(
        "/messages", data=FORM, headers={"Host": evil, "Origin": f"http://{evil}", "Sec-Fetch-Site": "same-origin"}
    )
    read = c.get("/", headers={"Host": evil})
    assert (posted.status_code, read.status_code) != (303, 200), "a rebound page can add messages and read the queue"
