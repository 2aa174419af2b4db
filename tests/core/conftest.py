"""The flow tests' world (tests/support/flow.py): a migrated SQLite template copied per test,
the mail templates, and ``env`` (the steps wired to fakes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from release.config import I18nSettings
from release.mail.templates import MailTemplates
from tests.support.flow import Env, flow_env, migrated_template


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_template(tmp_path_factory.mktemp("flow-template"))


@pytest.fixture(scope="module")
def mail_templates() -> MailTemplates:
    return MailTemplates(I18nSettings())


@pytest.fixture
def env(tmp_path: Path, migrated: Path, mail_templates: MailTemplates) -> Iterator[Env]:
    with flow_env(tmp_path, migrated, mail_templates) as world:
        yield world
