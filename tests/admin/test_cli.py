"""`flask --app app create-admin`."""

from __future__ import annotations

from sqlalchemy import select

from release.db.models import AdminUser, AuditEntry
from tests.admin.conftest import Console


def test_create_admin_from_prompt_and_stdin(console: Console) -> None:
    runner = console.stack.app.test_cli_runner()
    prompted = runner.invoke(args=["create-admin", "olga"], input="a long enough pass\na long enough pass\n")
    assert prompted.exit_code == 0, prompted.output
    assert "created admin account olga" in prompted.output
    assert "a long enough pass" not in prompted.output  # hidden input
    piped = runner.invoke(args=["create-admin", "paul", "--role", "viewer", "--password-stdin"],
                          input="another long password\n")  # fmt: skip
    assert piped.exit_code == 0, piped.output
    with console.stack.services.db.session() as session:
        users = {u.username: u.role for u in session.scalars(select(AdminUser))}
        assert users["olga"] == "admin" and users["paul"] == "viewer"
        assert session.scalar(select(AuditEntry).where(AuditEntry.target == "admin:paul")) is not None
    console.login(("paul", "another long password"))


def test_create_admin_refuses_bad_input(console: Console) -> None:
    runner = console.stack.app.test_cli_runner()
    short = runner.invoke(args=["create-admin", "quinn", "--password-stdin"], input="short\n")
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    mismatch = runner.invoke(args=["create-admin", "quinn"], input="first password 1\nsecond password 2\n")
    assert mismatch.exit_code != 0
    taken = runner.invoke(args=["create-admin", "alice-admin", "--password-stdin"], input="long enough password\n")
    assert taken.exit_code != 0 and "already exists" in taken.output
    role = runner.invoke(args=["create-admin", "rita", "--role", "root", "--password-stdin"], input="x" * 20 + "\n")
    assert role.exit_code != 0
    with console.stack.services.db.session() as session:
        assert session.scalar(select(AdminUser).where(AdminUser.username == "quinn")) is None
