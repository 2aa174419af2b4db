"""The HSL scripts in docs/halon/ against the service's link contract (DESIGN §2.1).

These are pinning tests: HSL cannot run here (Halon needs a licence), so they read the
scripts as text. Each script carries a test vector (key, n, m, t, s) in a comment; the
service must produce the same s through release.core.links and through `sign-link`, and
the script must build the signed string, the time and the case exactly as that contract
says. A script edited away from the contract, or a vector edited away from the service,
fails here before a gateway signs a single link the service refuses.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from release import create_app
from release.config import settings_from_mapping
from release.core import links
from release.devtools.simulator import SimulatorServer
from tests.support.config import make_config

HALON = Path(__file__).resolve().parents[2] / "docs" / "halon"
HALON5 = HALON / "halon5-eodrcpt.hsl"
HALON6 = HALON / "halon6-eod.hsl"
SCRIPTS = [HALON5, HALON6]
VECTOR = re.compile(r'\b(key|n|m|t|s) = "([^"]*)"')
# The signed string, built from three variables: "v1:" . n . ":" . m . ":" . t
SIGNED = re.compile(r'str_lower\(hmac_sha2\((\$\w+), "v1:" \. (\$\w+) \. ":" \. (\$\w+) \. ":" \. (\$\w+), 256\)\)')


def vector(script: Path) -> dict[str, str]:
    """The pinned test vector in the script's comments."""
    comments = [line for line in script.read_text(encoding="utf-8").splitlines() if line.startswith("//")]
    found = dict(pair for line in comments for pair in VECTOR.findall(line))
    assert set(found) == {"key", "n", "m", "t", "s"}, f"{script.name}: incomplete test vector {found}"
    return found


def code(script: Path) -> str:
    """The script without its comments, so a commented-out line proves nothing."""
    return re.sub(r"^\s*//[^\n]*\n", "", script.read_text(encoding="utf-8"), flags=re.MULTILINE)


def function_body(text: str, name: str) -> str:
    """The text of one HSL function, up to the next top-level function."""
    match = re.search(rf"^function {name}\(.*?(?=^function |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no function {name}"
    return match[0]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_vector_is_what_the_service_signs(script: Path) -> None:
    v = vector(script)
    assert links.TIME_RE.fullmatch(v["t"]) and links.SIGNATURE_RE.fullmatch(v["s"])
    assert links.sign(v["key"], v["n"], v["m"], int(v["t"])) == v["s"]
    # The service accepts exactly this link (fresh enough at its own time t).
    accepted = links.verify(
        {k: v[k] for k in links.FIELDS}, keys=[v["key"]], nodes=[v["n"]], max_age_seconds=86400, now=int(v["t"])
    )
    assert accepted == links.ReportLink(v["n"], v["m"], int(v["t"]))


def test_vectors_match_sign_link_command(simulator: SimulatorServer, tmp_path: Path) -> None:
    """`flask --app app sign-link` prints the same s as each script's vector."""
    v5, v6 = vector(HALON5), vector(HALON6)
    assert v5["key"] == v6["key"], "one service key signs both vectors"
    config = make_config(f"sqlite:///{tmp_path / 'hsl.sqlite3'}", simulator, 2525, links={"keys": [v5["key"]]})
    config["nodes"] = [
        {**config["nodes"][0], "name": v5["n"]},
        {
            "name": v6["n"],
            "type": "halon6",
            "api_url": simulator.url,
            "api_key": "halon-api-key-0123456789abcdef",
            "halon_version": "6.10",
        },
    ]
    runner = create_app(settings_from_mapping(config)).test_cli_runner()
    for v in (v5, v6):
        result = runner.invoke(args=["sign-link", "--node", v["n"], "--msgid", v["m"], "--time", v["t"]])
        assert result.exit_code == 0, result.output
        query = {k: values[0] for k, values in parse_qs(urlsplit(result.output.strip()).query).items()}
        assert query == {k: v[k] for k in links.FIELDS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_signs_v1_over_floored_time_in_lower_case(script: Path) -> None:
    text = code(script)
    signed = SIGNED.findall(text)
    assert len(signed) == 1, f'{script.name}: one str_lower(hmac_sha2(key, "v1:" . n . ":" . m . ":" . t, 256))'
    key, node, message, issued = signed[0]
    assert key == ("$releaseLinkKey" if script == HALON5 else "$key")
    # t is whole seconds: time() has decimals, and the service takes digits only.
    assert re.search(rf"\{issued} = string\(floor\(time\(\)\)\);", text), f"{script.name}: t must be floor(time())"
    if script == HALON5:
        assert (node, message) == ("$releaseNode", "$messageid")
    else:
        # The helper is called with the configured node and the transaction id.
        assert (node, message) == ("$node", "$messageid")
        assert "function release_link_fields($node, $key, $messageid)" in text
        calls = re.findall(r"release_link_fields\((\$\w+), (\$\w+), (\$\w+\[\"\w+\"\])\)", text)
        assert calls and set(calls) == {("$releaseNode", "$releaseLinkKey", '$transaction["id"]')}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_size_guard_rejects_large_messages_without_a_copy(script: Path) -> None:
    text = code(script)
    assert "$releaseMaxBytes = 10 * 1024 * 1024;" in text, "default guard: 10 MiB"
    reject = function_body(text, "Reject")
    guarded = re.search(r"if \(release_message_size\(\$?\w*\) > \$releaseMaxBytes\) \{(.*?)\}", reject, re.DOTALL)
    assert guarded, f"{script.name}: Reject() must check the size first"
    # Over the limit: only the plain reject, no copy kept and no link given.
    assert guarded[1].strip().endswith("builtin Reject(...$args);")
    assert "Quarantine" not in guarded[1] and "release_hold" not in guarded[1] and "$link" not in guarded[1]
    assert reject.index("release_message_size") < min(
        reject.index(kept) for kept in ("Quarantine(", "release_hold(") if kept in reject
    )


def test_halon5_quarantines_in_the_short_quarantine_then_rejects_with_the_link() -> None:
    reject = function_body(code(HALON5), "Reject")
    assert 'builtin Quarantine($releaseQuarantine, ["done" => false, "reject" => false]);' in reject
    assert '$args[0] = $reason . " " . $releaseLinkText . " " . $link;' in reject
    assert re.search(r'"\?n=" \. \$releaseNode \. "&m=" \. \$messageid \. "&t=" \. \$t \. "&s=" \. \$s', reject)


def test_halon6_holds_one_marked_copy_per_recipient() -> None:
    hold = function_body(code(HALON6), "release_hold")
    assert 'foreach ($transaction["recipients"] as $recipient)' in hold
    assert (
        '$mail->queue($transaction["senderaddress"], $recipient["address"], $recipient["transportid"],\n'
        '            ["hold" => true, "metadata" => $metadata]);'
    ) in hold
    # The marker, and the report data the service shows (all metadata values are strings).
    for line in ("$markerKey => $markerValue,", '"received" => $t,', '"senderip" => $connection["remoteip"],'):
        assert line in hold
    assert '$metadata["score"] = string($score);' in hold
    text = HALON6.read_text(encoding="utf-8")
    assert '$releaseMarkerKey = "qid";' in text and '$releaseMarkerValue = "1day";' in text  # qid=1day


def test_halon6_reject_mode_rejects_with_the_link() -> None:
    reject = function_body(code(HALON6), "Reject")
    branch = reject[reject.index("} else {\n        $fields") :]
    assert branch.index("release_hold(") < branch.index("builtin Reject(...$args);")
    assert "release_link_url($releasePublicUrl, $fields)" in branch
    url = function_body(code(HALON6), "release_link_url")
    assert '"/report?n=" . $fields["n"] . "&m=" . $fields["m"] . "&t=" . $fields["t"] . "&s=" . $fields["s"]' in url


def test_halon6_ndr_mode_pushes_then_accepts_or_defers() -> None:
    text = code(HALON6)
    push = function_body(text, "release_push")
    assert 'http($publicUrl . "/gateway/v1/held", [' in push
    assert '"method" => "POST"' in push and '"headers" => ["Content-Type: application/json"]' in push
    assert '"timeout" => $timeout' in push and "json_encode($fields)" in push
    fields = function_body(text, "release_link_fields")
    assert 'return ["n" => $node, "m" => $messageid, "t" => $t, "s" => $s];' in fields
    reject = function_body(text, "Reject")
    ndr = reject[reject.index('if ($releaseMode == "ndr")') : reject.index("} else {\n        $fields")]
    # Unverified senders (backscatter) get a plain reject; the others: hold, push, then decide.
    assert ndr.index("release_sender_verified(") < ndr.index("release_hold(") < ndr.index("release_push(")
    decided = re.search(
        r"if \(\$status == 202 or \$status == 200\) \{\s*(?://[^\n]*\s*)?builtin Accept\(\);\s*\} else \{\s*"
        r'(?://[^\n]*\s*)?builtin Defer\("[^"]+"\);',
        ndr,
    )
    assert decided, "202/200: Accept(); anything else (other status, timeout = 0): Defer()"
    verified = function_body(text, "release_sender_verified")
    assert 'if ($transaction["sender"] == "")' in verified and '$spf["result"] == "pass"' in verified
    assert '$releaseMode = "reject";' in HALON6.read_text(encoding="utf-8"), "reject mode is the default"


def test_readme_quotes_both_vectors() -> None:
    readme = (HALON / "README.md").read_text(encoding="utf-8")
    for script in SCRIPTS:
        v = vector(script)
        assert v["s"] in readme and f"v1:{v['n']}:{v['m']}:{v['t']}" in readme, script.name
