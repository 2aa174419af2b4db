"""Node configs that would only break at the first gateway call (a newline in a key or marker,
a non-ASCII credential, an endless timeout, a misspelt node in an environment variable) are
refused at start-up, naming the key or the variable."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from release.config import ConfigError, settings_from_mapping
from release.config.loading import apply_env_overrides

KEY = "Abcdefghijklmnop-0123456789"
N6 = {"name": "mx1", "type": "halon6", "api_url": "https://mx1:8080", "api_key": KEY, "halon_version": "6.10"}


def config(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "app": {"public_url": "https://r.example", "secret_key": secrets.token_urlsafe(32)},
        "links": {"keys": [secrets.token_urlsafe(24)]},
        "captcha": {"provider": "altcha"},
        "nodes": [node],
    }


@pytest.mark.parametrize(
    ("node", "key"),
    [
        # `$` in the marker regex lets a trailing newline through; the marker read back is
        # stripped, so no copy ever matches short_quarantine: every report "not found".
        ({**N6, "short_quarantine": "qid=1day\n", "long_quarantine": "qid=7days"}, "short_quarantine"),
        # requests quotes the header value (the key) in its InvalidHeader error.
        ({**N6, "api_key": KEY + "\n"}, "api_key"),
        ({**N6, "api_key": " " + KEY}, "api_key"),
        # HTTP headers are latin-1: every call raises a bare UnicodeEncodeError.
        ({**N6, "api_key": KEY + "\u20ac"}, "api_key"),
        # Every other secret gets the placeholder / 16-character check; api_key does not.
        ({**N6, "api_key": "changeme"}, "api_key"),
        # int() reads Arabic-Indic digits: "6.\u0661" sends {"minor": 1}.
        ({**N6, "halon_version": "6.\u0661"}, "halon_version"),
        # nan passes "<= 0"; every call then raises ValueError / OverflowError, not GatewayError.
        ({**N6, "timeout_seconds": float("nan")}, "timeout_seconds"),
        ({**N6, "timeout_seconds": float("inf")}, "timeout_seconds"),
    ],
    ids=[
        "marker-newline",
        "key-newline",
        "key-leading-space",
        "key-non-latin1",
        "key-placeholder",
        "version-unicode-digit",
        "timeout-nan",
        "timeout-inf",
    ],  # fmt: skip
)
def test_config_refuses_and_names_the_key(node: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config(node))
    assert caught.value.key.endswith(key), caught.value
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("node", "key"),
    [
        ({**N6, "password": "xyzxyzxyzxyzxyzxyz"}, "password"),
        ({**N6, "short_quarantine": "qid = 1day"}, "short_quarantine"),
        ({k: v for k, v in N6.items() if k != "halon_version"}, "halon_version"),
        ({**N6, "delete_shape": "task"}, "delete_shape"),
        ({**N6, "short_quarantine": "qid=1day", "long_quarantine": "hold=7days"}, "long_quarantine"),
        ({"name": "mx1", "api_url": "https://mx1", "password": "xyzxyzxyzxyzxyzxyz", "sender_notice": "ndr"},
         "sender_notice"),
    ],
)  # fmt: skip
def test_held_up_config_messages_name_the_key(node: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config(node))
    assert caught.value.key.endswith(key)


def test_env_override_of_api_key_applies() -> None:
    env = {"RELEASE_NODES__MX1__API_KEY": "Env-Key-0123456789abcdef"}
    settings = settings_from_mapping(apply_env_overrides(config(N6), env))
    assert settings.nodes[0].api_key == "Env-Key-0123456789abcdef"


def test_env_override_for_a_misspelt_node_names_the_variable() -> None:
    """RELEASE_NODES__MXI__API_KEY (typo) silently creates a second node, then fails with
    "nodes[1].api_url: is required", which says nothing about the variable."""
    env = {"RELEASE_NODES__MXI__API_KEY": "Env-Key-0123456789abcdef"}
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(apply_env_overrides(config(N6), env))
    assert "RELEASE_NODES__MXI" in str(caught.value) or "mxi" in str(caught.value), caught.value


R = {"name": "mx3", "type": "rspamd", "push_password": KEY, "relay_host": "127.0.0.1", "relay_port": 10026}


@pytest.mark.parametrize(
    ("node", "key"),
    [
        ({**R, "push_password": "changeme"}, "push_password"),
        ({k: v for k, v in R.items() if k != "push_password"}, "push_password"),
        ({**R, "push_password": KEY + "\n"}, "push_password"),
        ({**R, "relay_host": ""}, "relay_host"),
        ({**R, "relay_host": "mx 3"}, "relay_host"),
        ({**R, "relay_port": 0}, "relay_port"),
        ({**R, "relay_security": "ssl"}, "relay_security"),
        ({**R, "controller_url": "127.0.0.1:11334", "controller_password": KEY}, "controller_url"),
        ({**R, "controller_url": "http://127.0.0.1:11334"}, "controller_password"),
        ({**R, "controller_password": KEY}, "controller_url"),
        ({**R, "max_message_bytes": 0}, "max_message_bytes"),
        ({**R, "api_url": "https://mx3.example"}, "api_url"),
        ({**R, "api_key": KEY}, "api_key"),
        ({**R, "short_quarantine": "mailquarantine:1"}, "short_quarantine"),
        ({**N6, "relay_host": "127.0.0.1"}, "relay_host"),
    ],
    ids=[
        "placeholder-password",
        "no-password",
        "password-newline",
        "no-relay",
        "relay-with-space",
        "port-0",
        "unknown-security",
        "controller-not-url",
        "controller-without-password",
        "password-without-controller",
        "no-size",
        "halon-api-url",
        "halon-api-key",
        "halon-quarantine",
        "rspamd-key-on-halon",
    ],  # fmt: skip
)
def test_rspamd_node_config_refuses_and_names_the_key(node: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config(node))
    assert caught.value.key.endswith(f".{key}"), caught.value


def test_an_rspamd_node_needs_no_api_url_and_may_come_whole_from_the_environment() -> None:
    settings = settings_from_mapping(config(R))
    node = settings.nodes[0]
    assert (node.short_quarantine, node.long_quarantine, node.secret) == ("short", "long", KEY)
    assert "push_password" not in repr(node) and KEY not in repr(node)
    env = {
        "RELEASE_NODES__MX4__TYPE": "rspamd",
        "RELEASE_NODES__MX4__PUSH_PASSWORD": KEY,
        "RELEASE_NODES__MX4__RELAY_HOST": "10.0.0.4",
        "RELEASE_NODES__MX4__RELAY_PORT": "10026",
    }
    merged = apply_env_overrides(config(R), env)
    assert settings_from_mapping(merged).node("mx4") is not None
