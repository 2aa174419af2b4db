"""Process logging: text or JSON lines, one line per request and one per job run.

Request lines carry the path without its query string and with release tokens redacted
(tokens are credentials; report-link queries carry signatures), never headers or bodies.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

from release.config import LoggingSettings
from release.web.headers import redact_path

request_log = logging.getLogger("release.request")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Fields of LogRecord itself; anything else on a record came in through ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Marks the handler this module installed, so configuring again replaces it."""


def configure(settings: LoggingSettings) -> logging.Handler:
    """Send the service's logs (INFO and up) to stderr in the configured format."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    handler = _OurHandler()
    handler.setFormatter(JsonFormatter() if settings.format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    service = logging.getLogger("release")
    if service.level == logging.NOTSET:
        # Only our loggers at INFO: the root stays at WARNING (SQLAlchemy would log SQL at INFO).
        service.setLevel(logging.INFO)
    return handler


def _start() -> None:
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish(response: Response) -> Response:
    started = g.get("request_started")
    if started is None:
        return response
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    path = redact_path(request.path)
    response.headers.setdefault("X-Request-ID", g.request_id)
    if request_log.isEnabledFor(logging.INFO):
        # Made and handed over directly: Logger.info would walk the stack to find the caller's
        # file and line, which no format here prints (a tenth of this hook's cost).
        record = request_log.makeRecord(
            request_log.name, logging.INFO, __file__, 0, "%s %s %d %.1fms id=%s",
            (request.method, path, response.status_code, duration_ms, g.request_id), None, "_finish",
            {"method": request.method, "path": path, "status": response.status_code,
             "duration_ms": duration_ms, "request_id": g.request_id},
        )  # fmt: skip
        request_log.handle(record)
    return response


def init_app(app: Flask, settings: LoggingSettings) -> None:
    """Configure logging for this process and log every request once."""
    configure(settings)
    app.before_request(_start)
    app.after_request(_finish)
