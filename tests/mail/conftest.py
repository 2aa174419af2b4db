"""The mail tests' Jinja environment: the built-in templates in English."""

from __future__ import annotations

import jinja2
import pytest

from release.mail.templates import mail_environment


@pytest.fixture
def jinja_env() -> jinja2.Environment:
    return mail_environment("en")
