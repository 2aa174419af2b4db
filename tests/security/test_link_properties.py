"""Property-based tests of the report-link verifier, and 10,000 random links through the
real WSGI app (no 5xx)."""

from __future__ import annotations

import random
import string
import time
from collections import Counter
from collections.abc import Mapping
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from release.core import links
from release.core.links import LinkError, LinkExpired, LinkInvalid
from tests.support.stack import StackFactory

KEYS = ("current-key-0123456789abcdef", "previous-key-0123456789abcdef")
NODES = ("mx1", "mx-2")
NOW = 1_760_000_000
MAX_AGE = 24 * 3600
SKEW = 300
FIELDS = ("n", "m", "t", "s")
PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXAMPLES: Counter[str] = Counter()


def verify(params: Mapping[str, str]) -> links.ReportLink:
    return links.verify(params, keys=KEYS, nodes=NODES, max_age_seconds=MAX_AGE, now=NOW, clock_skew_seconds=SKEW)


message_ids = st.from_regex(r"\A[A-Za-z0-9._@:-]{1,128}\Z")


@st.composite
def valid_links(draw: st.DrawFn) -> dict[str, str]:
    node = draw(st.sampled_from(NODES))
    message_id = draw(message_ids)
    issued = NOW - draw(st.integers(-SKEW, MAX_AGE + SKEW))
    key = draw(st.sampled_from(KEYS))
    return links.ReportLink(node, message_id, issued).query(links.sign(key, node, message_id, issued))


def assert_refused(params: Mapping[str, str]) -> None:
    with pytest.raises((LinkInvalid, LinkExpired)):
        verify(params)


@PROPERTY_SETTINGS
@given(valid_links())
def test_valid_links_verify(params: dict[str, str]) -> None:
    EXAMPLES["valid"] += 1
    link = verify(params)
    assert (link.node, link.message_id, str(link.issued_at)) == (params["n"], params["m"], params["t"])


@PROPERTY_SETTINGS
@given(valid_links(), st.sampled_from(FIELDS), st.data())
def test_any_single_character_change_is_refused(params: dict[str, str], field: str, data: st.DataObject) -> None:
    EXAMPLES["mutation"] += 1
    value = params[field]
    kind = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    at = data.draw(st.integers(0, len(value) - (0 if kind == "insert" else 1)))
    if kind == "delete":
        mutated = value[:at] + value[at + 1 :]
    else:
        # Mostly the characters a field may legitimately hold, plus whitespace and newlines.
        char = data.draw(st.sampled_from("0\n\r\t aAfF9-_.:@+") | st.characters(codec="utf-8"))
        mutated = value[:at] + char + value[at + (1 if kind == "replace" else 0) :]
    assume(mutated != value)
    assert_refused({**params, field: mutated})


@PROPERTY_SETTINGS
@given(valid_links(), st.sampled_from(FIELDS), st.data())
def test_truncation_or_removal_is_refused(params: dict[str, str], field: str, data: st.DataObject) -> None:
    EXAMPLES["truncation"] += 1
    keep = data.draw(st.integers(0, len(params[field]) - 1))
    assert_refused({**params, field: params[field][:keep]})
    assert_refused({k: v for k, v in params.items() if k != field})


@PROPERTY_SETTINGS
@given(valid_links(), st.sampled_from([(a, b) for a in FIELDS for b in FIELDS if a < b]))
def test_swapped_parameters_are_refused(params: dict[str, str], pair: tuple[str, str]) -> None:
    EXAMPLES["swap"] += 1
    a, b = pair
    assume(params[a] != params[b])
    assert_refused({**params, a: params[b], b: params[a]})


@PROPERTY_SETTINGS
@given(valid_links(), st.sampled_from(KEYS), st.sampled_from(NODES))
def test_signature_of_another_link_is_refused(params: dict[str, str], key: str, node: str) -> None:
    EXAMPLES["resigned"] += 1
    assume(node != params["n"])
    # A signature that is genuine for the same message on another node does not carry over.
    assert_refused({**params, "n": node})
    forged = links.sign("not-the-key-0123456789abcdef", params["n"], params["m"], int(params["t"]))
    assert_refused({**params, "s": forged})


@pytest.mark.parametrize(
    "variant",
    [
        lambda t: t + "\n",  # `$` in a regex lets a trailing newline through
        lambda t: "0" + t,  # int() ignores leading zeros
        lambda t: "+" + t,
        lambda t: " " + t,
        lambda t: t + " ",
        lambda t: "\u0661" * 0 + t.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),  # Arabic-Indic digits
    ],
    ids=["trailing-newline", "leading-zero", "plus", "leading-space", "trailing-space", "non-ascii-digits"],
)
def test_non_canonical_time_is_refused(variant: object) -> None:
    """Found by the mutation property: ``t`` with a trailing newline or a leading zero verified
    (same meaning, but a second valid spelling of the link). Fixed: exact-match regexes."""
    params = links.ReportLink("mx1", "abc", NOW - 60).query(links.sign(KEYS[0], "mx1", "abc", NOW - 60))
    assert verify(params)
    assert_refused({**params, "t": variant(params["t"])})  # type: ignore[operator]
    assert_refused({**params, "m": params["m"] + "\n"})
    assert not links.is_token_shaped("A" * 43 + "\n")


query_values = st.text(max_size=80) | st.from_regex(r"\A[0-9a-f]{64}\Z") | st.from_regex(r"\A[0-9]{1,13}\Z")


@PROPERTY_SETTINGS
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), query_values, max_size=6))
def test_random_query_strings_raise_only_link_errors(params: dict[str, str]) -> None:
    EXAMPLES["random"] += 1
    with pytest.raises(LinkError):
        verify(params)


def test_every_property_ran_its_examples() -> None:
    """Each property above that ran tried at least ``max_examples`` inputs (rejected ones
    included): Hypothesis did not give up early and leave a property nearly untested."""
    if not EXAMPLES:
        pytest.skip("run with the properties above (this module, in order)")
    wanted = PROPERTY_SETTINGS.max_examples
    assert {name: count for name, count in EXAMPLES.items() if count < wanted} == {}, dict(EXAMPLES)


# ---------------------------------------------------------------------- 10,000 through WSGI

LOAD = 10_000


def random_links(stack_keys: tuple[str, ...], seed: int) -> list[str]:
    """Query strings: garbage, mutated genuine links, genuine links (fresh, expired, future)."""
    rng = random.Random(seed)
    now = int(time.time())
    alphabet = string.printable + "äöü€漢字\u202e\x00"

    def genuine(age: int) -> dict[str, str]:
        m = "".join(rng.choices(string.ascii_letters + string.digits + "-", k=rng.randint(1, 40)))
        t = now - age
        return {"n": "mx1", "m": m, "t": str(t), "s": links.sign(rng.choice(stack_keys), "mx1", m, t)}

    out: list[str] = []
    for i in range(LOAD):
        kind = i % 5
        if kind == 0:  # random fields and values
            params = {
                rng.choice(["n", "m", "t", "s", "x", ""]): "".join(rng.choices(alphabet, k=rng.randint(0, 70)))
                for _ in range(rng.randint(0, 6))
            }
            out.append(urlencode(params))
        elif kind == 1:  # raw bytes, percent-encoded (invalid UTF-8 included)
            raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 120)))
            out.append("n=mx1&m=" + quote(raw, safe="") + "&t=" + quote(raw[:5]) + "&s=" + quote(raw[::-1]))
        elif kind == 2:  # a genuine link with one character changed
            params = genuine(rng.randint(0, 3600))
            field = rng.choice(FIELDS)
            value = params[field]
            at = rng.randrange(len(value))
            params[field] = value[:at] + rng.choice(alphabet) + value[at + 1 :]
            out.append(urlencode(params))
        elif kind == 3:  # genuine: fresh (form page), expired (410) or from the future (400)
            age = rng.choice([rng.randint(0, 3600), rng.randint(30 * 3600, 10**7), -rng.randint(3600, 10**6)])
            out.append(urlencode(genuine(age)))
        else:  # odd shapes: repeated keys, huge values, empty
            out.append(rng.choice(["", "&&&", "n=&m=&t=&s=", "n=mx1&n=mx2", "t=" + "9" * 4000, "m=%00%ff%fe"]))
    return out


def test_ten_thousand_random_links_never_5xx(make_stack: StackFactory) -> None:
    stack = make_stack()
    app = stack.app
    queries = random_links(stack.services.settings.links.keys, seed=4)
    client = app.test_client()
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    for query in queries:
        statuses[client.get("/report?" + query).status_code] += 1
    elapsed = time.perf_counter() - started
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    print(f"{LOAD} random links: {server_errors} answered 5xx; statuses {dict(sorted(statuses.items()))}; "
          f"{elapsed:.1f}s")  # fmt: skip
    assert sum(statuses.values()) == LOAD
    assert server_errors == 0
    assert set(statuses) <= {200, 400, 404, 410}
    assert statuses[200] and statuses[400] and statuses[410]  # every path was exercised
    assert elapsed < 120  # functional bound only (about 15-35 s on the 2-core CI machine)
