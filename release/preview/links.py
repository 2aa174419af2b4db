"""Where a link really goes, and whether the words around it claim somewhere else.

The registrable domain comes from the Public Suffix List snapshot tldextract ships (no
network: a preview never makes a request). Hosts are shown in ASCII, so a look-alike
(``pаypal.com`` with a Cyrillic a) shows up as the ``xn--`` name it is.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote, urlsplit

import tldextract

from release.preview.headers import CONTROL, as_read
from release.preview.model import Link

URL_LIMIT = 500
TEXT_LIMIT = 200
CLAIM_SCAN = 4000
# A URL written out in text (the plain-text body; link texts that show one).
URL_IN_TEXT = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'\]\[{}|\\^`]+", re.IGNORECASE)
# A word shaped like a domain name (what a link's visible text may claim).
DOMAIN_IN_TEXT = re.compile(r"(?<![\w@.-])(?:[\w-]+\.)+[^\W\d_]{2,}(?![\w-])")
TRAILING = ".,;:!?)'\""
SPECIAL_USE = {"example", "test", "invalid", "localhost", "local", "internal"}
SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
# Schemes whose URLs browsers parse by the WHATWG rules for hosts ("special" schemes).
SPECIAL = {"http", "https", "ftp", "ws", "wss"}


@functools.cache
def _extract() -> tldextract.TLDExtract:
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=False)


def warm_up() -> None:
    """Load the suffix list now (most of a second), so no page view waits for it."""
    _extract()("example.com")


def registrable(host: str) -> str:
    """``login.bank.example.co.uk`` → ``example.co.uk``; under a name the list does not know
    (the special-use ``.example``, an intranet's ``.corp``) the last two labels; an IP address
    or a bare name as it is."""
    parts = _extract()(host)
    if parts.top_domain_under_public_suffix:
        return parts.top_domain_under_public_suffix
    if parts.suffix or host.replace(".", "").isdigit() or ":" in host:
        return host
    return ".".join(host.split(".")[-2:])


def _names_a_domain(host: str) -> bool:
    """Whether a word is a domain name: a public suffix, or a special-use one (RFC 6761);
    "invoice.pdf" is not."""
    return bool(_extract()(host).suffix) or host.rpartition(".")[2] in SPECIAL_USE


def ascii_host(host: str) -> tuple[str, bool]:
    """The host in ASCII (IDNA) and whether it had non-ASCII labels."""
    host = host.strip().rstrip(".").lower()
    if host.isascii():
        return host, host.startswith("xn--") or ".xn--" in host
    try:
        return host.encode("idna").decode("ascii"), True
    except UnicodeError:
        return host.encode("ascii", "backslashreplace").decode("ascii"), True


def link(url: str, text: str) -> Link:
    """A :class:`Link` for ``url`` shown with ``text``."""
    url = CONTROL.sub("", url.strip())[:URL_LIMIT]
    read = " ".join(CONTROL.sub(" ", text[:CLAIM_SCAN]).split())
    text = read[:TEXT_LIMIT]  # shown; the claim is looked for in all that was read
    try:
        parts = urlsplit(_as_browsers_read(url))
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
    except ValueError:
        scheme, host = "invalid", ""
    if scheme == "mailto":
        # The first address, percent-decoded as a mail client reads it ("%40" is an "@").
        first = unquote(url.partition(":")[2].partition("?")[0]).split(",")[0]
        host = first.rpartition("@")[2].strip(" <>\"'")
    host, international = ascii_host(host) if host else ("", False)
    domain = registrable(host) if host else ""
    return Link(url, scheme, host, domain, text, _claimed(read, domain), international)


def _as_browsers_read(url: str) -> str:
    """``url`` spelled so that urlsplit finds the host a browser goes to (WHATWG URL rules).

    For http(s) a backslash is a slash and any run of slashes or backslashes after the
    scheme starts the host: urlsplit alone read "https://evil.example\\@paypal.com/" as
    paypal.com (the part after "@"), where a browser goes to evil.example, and it found no
    host in "https:evil.example" or "//evil.example/x" at all. A bare name gets http://."""
    if url[:2] in ("//", "\\\\", "/\\", "\\/"):
        url = "http:" + url
    elif not SCHEME.match(url):
        return "http://" + url
    scheme, _, rest = url.partition(":")
    if scheme.lower() in SPECIAL:
        return scheme + "://" + rest.lstrip("/\\").replace("\\", "/")
    return url


def _claimed(text: str, domain: str) -> str:
    """The first domain the visible text names that is not the link's own."""
    for word in DOMAIN_IN_TEXT.findall(as_read(text)):
        host, _ = ascii_host(word.rstrip(TRAILING))
        claimed = registrable(host)
        # Text that names a real suffix ("see invoice.pdf" is not a domain) and another domain.
        if _names_a_domain(host) and claimed != domain:
            return claimed
    return ""


def links_in_text(body: str, limit: int) -> list[Link]:
    """Every URL written out in a plain-text body, first ``limit``."""
    found = []
    for match in URL_IN_TEXT.finditer(body):
        url = match.group(0).rstrip(TRAILING)
        found.append(link(url, url))
        if len(found) >= limit:
            break
    return found
