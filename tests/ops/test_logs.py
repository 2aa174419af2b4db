"""Structured logs: one line per request (path redacted, no query) and one per job run."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from release.config import ConfigError, settings_from_mapping
from release.ops import logs
from tests.support.config import make_config
from tests.support.stack import Stack, StackFactory, drain_due
from tests.support.visitor import report_path, submit_report


def our_handler() -> logging.Handler:
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, logs._OurHandler)]  # noqa: SLF001
    return handler


def request_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "release.request"]


def test_one_line_per_request_in_json(make_stack: StackFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="release")
    stack = make_stack(logging={"format": "json"})
    handler = our_handler()
    assert isinstance(handler.formatter, logs.JsonFormatter)
    token = "Tq2" + "x" * 40
    response = stack.client.get(f"/api/v1/releases/{token}?secret=1", headers={"X-Request-ID": "lb-42.a"})
    assert response.status_code == 404 and response.headers["X-Request-ID"] == "lb-42.a"
    path = report_path(stack, "tx-unknown")
    stack.client.get(path, headers={"X-Request-ID": 'bad id with spaces && quotes"'})
    first, second = request_records(caplog)
    entry = json.loads(handler.format(first))
    assert entry["logger"] == "release.request" and entry["level"] == "info"
    assert (entry["method"], entry["path"], entry["status"], entry["request_id"]) == (
        "GET", "/api/v1/releases/[token]", 404, "lb-42.a")  # fmt: skip
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
    assert token not in handler.format(first) and "secret=1" not in handler.format(first)
    later = json.loads(handler.format(second))
    assert later["path"] == "/report" and "?" not in handler.format(second)
    assert len(later["request_id"]) == 32 and " " not in later["request_id"]  # generated instead


def test_text_is_the_default(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="release")
    stack.client.post("/api/v1/recipients/1/release")
    (record,) = request_records(caplog)
    line = our_handler().format(record)
    assert "release.request: POST /api/v1/recipients/1/release 401 " in line and "ms id=" in line


def test_one_line_per_job_run(make_stack: StackFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="release")
    stack = make_stack(logging={"format": "json"})
    tx = stack.sim.add_message("anna@partner.example", ["bob@example.test"], "Figures")
    assert submit_report(stack.new_client(), stack, report_path(stack, tx)).status_code == 303
    stack.sim.fail_next(1, status=503)
    drain_due(stack.worker)
    runs = [json.loads(our_handler().format(r)) for r in caplog.records if hasattr(r, "job_kind")]
    assert [(e["job_kind"], e["outcome"]) for e in runs] == [("locate", "retry"), ("locate", "done"),
                                                              ("notify", "done")]  # fmt: skip
    assert all(isinstance(e["duration_ms"], float) and e["job_id"] >= 1 for e in runs)


def test_bad_format_refused(tmp_path: Any, simulator: Any) -> None:
    config = make_config(f"sqlite:///{tmp_path / 'x.sqlite3'}", simulator, 25, logging={"format": "xml"})
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config)
    assert caught.value.key == "logging.format"
