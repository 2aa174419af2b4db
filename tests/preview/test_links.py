"""Where a link really goes (its registrable domain, as a browser reads the URL) and whether
its visible text claims another domain."""

from __future__ import annotations

import pytest

from release.preview.links import TEXT_LIMIT, URL_LIMIT, link, links_in_text, registrable


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("login.bank.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("www.paypal.com", "paypal.com"),
        ("a.b.c.evil.com", "evil.com"),
        ("shop.example.com.au", "example.com.au"),
        ("192.168.0.1", "192.168.0.1"),
        ("localhost", "localhost"),
    ],
)
def test_registrable_domain(host: str, domain: str) -> None:
    assert registrable(host) == domain


def test_ip_literal_hosts() -> None:
    assert link("http://192.168.0.1:8080/login", "").domain == "192.168.0.1"
    found = link("http://[2001:db8::1]/x", "")
    assert found.host == "2001:db8::1" and found.domain == "2001:db8::1"


def test_idn_host_is_shown_in_ascii() -> None:
    found = link("https://pаypal.com/login", "")  # Cyrillic a
    assert found.host == "xn--pypal-4ve.com"
    assert found.domain == "xn--pypal-4ve.com"
    assert found.international


def test_punycode_host_is_international_too() -> None:
    assert link("https://xn--pypal-4ve.com/", "").international
    assert not link("https://paypal.com/", "").international


def test_ideographic_full_stop_separates_labels() -> None:
    assert link("https://login\u3002paypal.com/", "").domain == "paypal.com"


def test_userinfo_does_not_name_the_host() -> None:
    found = link("https://paypal.com@evil.example/", "https://paypal.com/")
    assert found.host == "evil.example"
    assert found.claimed_domain == "paypal.com" and found.mismatch


def test_userinfo_with_password_and_port() -> None:
    assert link("https://paypal.com:443@evil.com:8443/x", "").domain == "evil.com"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.com\\@paypal.com/",  # browsers read a backslash as a slash
        "https://evil.com\\\\paypal.com/",
        "https:\\\\evil.com/",
        "https:evil.com/",  # no slashes: still the host, for http(s)
        "https:///evil.com/",
        "HTTPS://EVIL.COM./",
        "//evil.com/x",  # relative to the scheme only
        "https://evil.com#@paypal.com",
        "https://evil.com?@paypal.com",
        "https://evil.com/@paypal.com",
        " \thttps://evil.com/",
        "https://ev\til.com/",  # tabs and newlines are dropped from URLs
    ],
)
def test_host_as_a_browser_reads_it(url: str) -> None:
    assert link(url, "").domain == "evil.com"


def test_relative_link_has_no_host() -> None:
    found = link("/login", "")
    assert found.host == "" and found.domain == ""


def test_url_without_scheme_is_http() -> None:
    found = link("www.example.com/x", "")
    assert (found.scheme, found.domain) == ("http", "example.com")


@pytest.mark.parametrize(
    "url",
    [
        "mailto:billing@shop.example.com?subject=x",
        "mailto:Billing <billing@shop.example.com>?subject=x",
        "mailto:%22Billing%22%20%3Cbilling@shop.example.com%3E",
        "mailto:billing%40shop.example.com",
        "MAILTO:billing@shop.example.com,other@evil.com",
    ],
)
def test_mailto_domain_is_the_first_address(url: str) -> None:
    found = link(url, "")
    assert found.scheme == "mailto"
    assert found.domain == "example.com"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "vbscript:x", "file:///c:/x", "blob:x"])
def test_dangerous_schemes(url: str) -> None:
    assert link(url, "").dangerous


@pytest.mark.parametrize("url", ["http://x.example/", "https://x.example/", "mailto:a@x.example"])
def test_ordinary_schemes_are_not_dangerous(url: str) -> None:
    assert not link(url, "").dangerous


def test_unparseable_url_is_not_an_error() -> None:
    found = link("http://[bad/", "x")
    assert found.scheme == "invalid" and found.host == "" and found.dangerous


# --- mismatch between the text and the target -----------------------------------------


@pytest.mark.parametrize(
    ("url", "text", "claimed"),
    [
        ("https://evil.com/", "paypal.com", "paypal.com"),
        ("https://evil.com/", "Log in at https://www.paypal.com/signin", "paypal.com"),
        ("https://evil.com/", "Visit PayPal.com!", "paypal.com"),
        ("https://evil.com/", "www.paypal.com.", "paypal.com"),
        ("https://evil.com/", "pаypal.com", "xn--pypal-4ve.com"),  # a look-alike is another domain
        ("https://paypal.com.evil.com/", "paypal.com", "paypal.com"),
        ("https://evil.com/", "secure.bank.co.uk", "bank.co.uk"),
        ("https://xn--pypal-4ve.com/", "paypal.com", "paypal.com"),
    ],
)
def test_text_naming_another_domain_is_a_mismatch(url: str, text: str, claimed: str) -> None:
    found = link(url, text)
    assert found.claimed_domain == claimed
    assert found.mismatch


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("https://evil.com/invoice.pdf", "invoice.pdf"),  # a file name is not a domain
        ("https://evil.com/", "Download report.docx now"),
        ("https://paypal.com/", "paypal.com"),  # its own domain
        ("https://paypal.com/", "PAYPAL.COM"),
        ("https://www.paypal.com/", "login.paypal.com"),  # a subdomain of the same domain
        ("https://www.example.co.uk/", "shop.example.co.uk"),
        ("https://evil.com/", "Click here"),
        ("https://evil.com/", "version 1.2.3"),
        ("https://evil.com/", "costs 12.50 EUR"),
        ("https://evil.com/", ""),
        ("https://evil.com/", "write to support@paypal.com"),  # an address is not a link text domain
    ],
)
def test_text_without_another_domain_is_no_mismatch(url: str, text: str) -> None:
    found = link(url, text)
    assert found.claimed_domain == ""
    assert not found.mismatch


def test_url_and_text_are_bounded_and_stripped() -> None:
    found = link("https://x.example/" + "a" * 5000, "b" * 5000 + "\u202e")
    assert len(found.url) == URL_LIMIT
    assert len(found.text) == TEXT_LIMIT
    assert "\u202e" not in link("https://x.example/", "pay\u202epal").text


# --- URLs written out in plain text ----------------------------------------------------


def test_links_in_text_strip_trailing_punctuation() -> None:
    body = 'See https://a.example.com/x). And (www.b.example.com/y), "https://c.example.com/z". End: http://d.example.com/?q=1;'
    assert [found.url for found in links_in_text(body, 10)] == [
        "https://a.example.com/x",
        "www.b.example.com/y",
        "https://c.example.com/z",
        "http://d.example.com/?q=1",
    ]


def test_links_in_text_name_their_domain_and_claim_nothing() -> None:
    [found] = links_in_text("Pay at https://secure.paypal.com.evil.com/login now", 10)
    assert found.domain == "evil.com"
    assert found.text == found.url
    assert not found.mismatch  # the text is the URL itself


def test_links_in_text_stop_at_the_limit() -> None:
    found = links_in_text("http://x.example.com/ " * 500, 200)
    assert len(found) == 200


def test_links_in_text_international() -> None:
    [found] = links_in_text("Siehe https://bücher.de/angebot heute", 5)
    assert found.host == "xn--bcher-kva.de" and found.international


def test_no_links_in_text() -> None:
    assert links_in_text("no links here, just example.com as a word", 10) == []
