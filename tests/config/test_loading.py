"""Configuration loading: TOML, environment overrides, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from release.config import ConfigError, load_settings, settings_from_mapping

GOOD_TOML = """
[app]
public_url = "https://release.example.com"
secret_key = "k3P9sV2xQ7wL0zR5tY8uB1nM4cF6hJ0a"

[database]
url = "postgresql+psycopg://release@db/release"

[links]
keys = ["Zq8pL2mN5vB7xC1kJ4hG", "previous-rotated-key-9876"]

[captcha]
provider = "recaptcha"
site_key = "site-key"
secret = "captcha-secret"

[smtp]
host = "mail.example.com"
port = 587

[retention]
short_hours = 12
long_days = 10

[[nodes]]
name = "mx1"
api_url = "https://mx1.example.com"
username = "release"
password = "node-password-123"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_full_config_loads_typed(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD_TOML), environ={})
    assert settings.app.public_url == "https://release.example.com"
    assert settings.links.keys == ("Zq8pL2mN5vB7xC1kJ4hG", "previous-rotated-key-9876")
    assert settings.smtp.port == 587 and settings.smtp.security == "starttls"
    assert settings.retention.short_hours == 12 and settings.retention.long_days == 10
    node = settings.node("mx1")
    assert node is not None and node.verify_tls and node.long_quarantine == "mailquarantine:2"
    assert "node-password-123" not in repr(node)


def test_environment_overrides_sections_and_nodes_by_name(tmp_path: Path) -> None:
    env = {
        "RELEASE_SMTP__PORT": "2525",
        "RELEASE_DATABASE__URL": "sqlite:////tmp/x.sqlite3",
        "RELEASE_LINKS__KEYS": "Aa1Bb2Cc3Dd4Ee5Ff6Gg7, Hh8Ii9Jj0Kk1Ll2Mm3",
        "RELEASE_NODES__MX1__PASSWORD": "from-the-environment",
        "RELEASE_NODES__MX1__VERIFY_TLS": "false",
        "UNRELATED": "x",
    }
    settings = load_settings(write(tmp_path, GOOD_TOML), environ=env)
    assert settings.smtp.port == 2525
    assert settings.database.url == "sqlite:////tmp/x.sqlite3"
    assert settings.links.keys == ("Aa1Bb2Cc3Dd4Ee5Ff6Gg7", "Hh8Ii9Jj0Kk1Ll2Mm3")
    node = settings.node("mx1")
    assert node is not None and node.password == "from-the-environment" and node.verify_tls is False


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('secret_key = "k3P9sV2xQ7wL0zR5tY8uB1nM4cF6hJ0a"', 'secret_key = "change-me"'), "app.secret_key"),
        (('secret_key = "k3P9sV2xQ7wL0zR5tY8uB1nM4cF6hJ0a"', 'secret_key = "short"'), "app.secret_key"),
        (('secret_key = "k3P9sV2xQ7wL0zR5tY8uB1nM4cF6hJ0a"', ""), "app.secret_key"),
        (('"Zq8pL2mN5vB7xC1kJ4hG", ', '"current-gateway-shared-key", '), "links.keys[0]"),
        (("port = 587", 'port = "lots"'), "smtp.port"),
        (("port = 587", "port = 70000"), "smtp.port"),
        (('provider = "recaptcha"', 'provider = "guess"'), "captcha.provider"),
        (('site_key = "site-key"', ""), "captcha.site_key"),
        (("long_days = 10", "long_days = 0"), "retention.long_days"),
        (("short_hours = 12", "short_hours = 480"), "retention.long_days"),
        (('name = "mx1"', 'name = "MX 1"'), "nodes[0].name"),
        (('api_url = "https://mx1.example.com"', 'api_url = "mx1"'), "nodes[0].api_url"),
        (('password = "node-password-123"', ""), "nodes[0].password"),
        (("[retention]", "[retention]\nbogus = 1"), "retention.bogus"),
        (('host = "mail.example.com"', 'host = "mail.example.com"\n[mystery]'), "mystery"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    old, new = change
    assert old in GOOD_TOML
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, GOOD_TOML.replace(old, new, 1)), environ={})
    assert caught.value.key == key
    assert key in str(caught.value)


def test_missing_file_and_bad_toml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[app\n"), environ={})


def test_production_config_without_nodes_or_keys_refuses() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"app": {"secret_key": "k3P9sV2xQ7wL0zR5tY8uB1nM4cF6hJ0a"}})
    assert caught.value.key == "links.keys"


def test_demo_relaxes_secrets_only() -> None:
    settings = settings_from_mapping({"app": {"demo": True, "secret_key": "demo"}, "captcha": {"provider": "altcha"}})
    assert settings.app.demo
    with pytest.raises(ConfigError):
        settings_from_mapping({"app": {"demo": True, "secret_key": "demo"}, "smtp": {"security": "ssl"}})


def test_demo_still_needs_a_secret_key() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"app": {"demo": True}, "captcha": {"provider": "altcha"}})
    assert caught.value.key == "app.secret_key"


def test_a_bad_value_from_the_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOML.replace('api_url = "https://mx1.example.com"', 'api_url = "mx1"'))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(caught.value).startswith(f"{path}: nodes[0].api_url: ")
    assert caught.value.key == "nodes[0].api_url" and caught.value.source == str(path)


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("RELEASE_DATABASE__URL", "postgres://x@y/z?a=1&b", None),  # an accepted value loads
        ("RELEASE_SMTP__PORT", "lots", "smtp.port"),
        ("RELEASE_LINKS__KEYS", "short", "links.keys[0]"),
        ("RELEASE_NODES__MX1__API_URL", "mx1", "nodes[0].api_url"),
        ("RELEASE_SMTP__BOGUS", "1", "smtp.bogus"),
    ],
)
def test_a_bad_value_from_the_environment_names_the_variable(
    tmp_path: Path, variable: str, value: str, key: str | None
) -> None:
    path = write(tmp_path, GOOD_TOML)
    if key is None:
        assert load_settings(path, environ={variable: value}).database.url == value
        return
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={variable: value})
    assert str(caught.value).startswith(f"{variable}: {key}: ")
    assert str(path) not in str(caught.value)  # the file is fine: do not send the operator there
    assert caught.value.key == key


@pytest.mark.parametrize(
    ("variable", "key"),
    [
        ("RELEASE_APP__SECRET_KEY", "app.secret_key"),
        ("RELEASE_LINKS__KEYS", "links.keys"),
        ("RELEASE_CAPTCHA__SECRET", "captcha.secret"),
        ("RELEASE_NODES__MX1__PASSWORD", "nodes[0].password"),
    ],
)
def test_an_empty_secret_in_the_environment_names_the_empty_variable(tmp_path: Path, variable: str, key: str) -> None:
    """An EnvironmentFile line left as ``NAME=''`` overrides the file with nothing."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, GOOD_TOML), environ={variable: ""})
    assert str(caught.value).startswith(f"{variable}: {key}: ")
    assert str(caught.value).endswith("(the variable is set but empty)")


def test_a_secret_set_nowhere_names_the_file_and_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOML.replace('password = "node-password-123"', ""))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: nodes[0].password: ")
    assert message.endswith("neither the file nor RELEASE_NODES__MX1__PASSWORD sets it")


def test_a_variable_for_a_node_the_file_lacks_names_the_variable(tmp_path: Path) -> None:
    """The phantom node of the old release.env template: an empty MX2 password line."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, GOOD_TOML), environ={"RELEASE_NODES__MX2__PASSWORD": ""})
    assert str(caught.value).startswith("RELEASE_NODES__MX2__PASSWORD: names node 'mx2', which the config does not")
    assert "nodes[1]" not in str(caught.value)
