"""Report links and release tokens."""

from __future__ import annotations

import pytest

from release.core import links

KEY = "gateway-shared-key-0123456789"
MSGID = "3f0c2a9e-6b1d-4c57-9a4e-1d2b3c4d5e6f"
ISSUED = 1764000000
# Computed independently of this code base, with:
#   printf '%s' "v1:mx1:3f0c2a9e-6b1d-4c57-9a4e-1d2b3c4d5e6f:1764000000" \
#     | openssl dgst -sha256 -hmac "gateway-shared-key-0123456789"
PINNED_SIGNATURE = "9a9429563ecef97f8d60792d57b94074def888f0bb8199243527822fdf6b9168"


def params(**overrides: str) -> dict[str, str]:
    base = {"n": "mx1", "m": MSGID, "t": str(ISSUED), "s": PINNED_SIGNATURE}
    base.update(overrides)
    return base


def check(query: dict[str, str], *, keys: tuple[str, ...] = (KEY,), now: float = ISSUED + 60) -> links.ReportLink:
    return links.verify(query, keys=keys, nodes=["mx1", "mx2"], max_age_seconds=24 * 3600, now=now)


def test_signature_matches_the_pinned_vector() -> None:
    assert links.sign(KEY, "mx1", MSGID, ISSUED) == PINNED_SIGNATURE


def test_valid_link_is_accepted() -> None:
    assert check(params()) == links.ReportLink("mx1", MSGID, ISSUED)


def test_build_report_url_round_trips() -> None:
    url = links.build_report_url("https://release.example.com/", KEY, "mx1", MSGID, ISSUED)
    assert url == f"https://release.example.com/report?n=mx1&m={MSGID}&t={ISSUED}&s={PINNED_SIGNATURE}"


@pytest.mark.parametrize(
    "query",
    [
        params(s=PINNED_SIGNATURE[:-1] + "0"),  # tampered signature
        params(m=MSGID.replace("3f", "4f", 1)),  # tampered message id
        params(t=str(ISSUED + 1)),  # tampered time
        params(n="mx2"),  # signed for another node
        params(s=PINNED_SIGNATURE[:40]),  # truncated
        params(s=PINNED_SIGNATURE.upper()),  # not the contract's lowercase hex
        params(n="MX1"),
        params(n="unknown"),  # node not configured
        params(m=""),
        params(m="a" * 129),
        params(m="id with spaces"),
        params(t="-5"),
        params(t="1e9"),
        params(t=""),
        {"n": "mx1", "m": MSGID, "t": str(ISSUED)},  # missing signature
        {},
    ],
)
def test_bad_links_are_invalid(query: dict[str, str]) -> None:
    with pytest.raises(links.LinkInvalid):
        check(query)


def test_link_past_short_retention_is_expired_with_410() -> None:
    with pytest.raises(links.LinkExpired) as caught:
        check(params(), now=ISSUED + 24 * 3600 + 301)
    assert caught.value.status == 410


def test_clock_skew_is_tolerated_both_ways() -> None:
    assert check(params(), now=ISSUED + 24 * 3600 + 299)
    assert check(params(), now=ISSUED - 299)
    with pytest.raises(links.LinkInvalid):
        check(params(), now=ISSUED - 301)


def test_rotation_previous_key_verifies_removed_key_does_not() -> None:
    assert check(params(), keys=("new-key-abcdefghijkl", KEY))
    with pytest.raises(links.LinkInvalid):
        check(params(), keys=("new-key-abcdefghijkl",))


def test_release_tokens_are_urlsafe_long_and_derived() -> None:
    nonce = links.new_token_nonce()
    token = links.release_token("app-secret-0123456789abcdef", nonce)
    assert links.is_token_shaped(token)
    assert len(token) == 43  # 256 bits, base64url without padding
    assert token == links.release_token("app-secret-0123456789abcdef", nonce)
    assert token != links.release_token("another-secret-0123456789", nonce)
    assert token != links.release_token("app-secret-0123456789abcdef", links.new_token_nonce())
    assert links.token_hash(token) != token and len(links.token_hash(token)) == 64
    assert not links.is_token_shaped(token[:-1])
    assert not links.is_token_shaped(token[:-1] + "=")
