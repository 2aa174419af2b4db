"""Operator endpoints: the readiness probe and the access-controlled Prometheus metrics.

/readyz: the database answers and at least one gateway node is usable.

Node checks are cached for a few seconds and run in parallel under one deadline, so a probe
storm (every load balancer and kubelet asking at once) costs the gateway one call per node
per cache period and a probe never hangs on a slow node.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass

from flask import Blueprint, Response, abort, current_app, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from release.container import services
from release.gateway import Gateway
from release.ops import metrics
from release.web import bearer
from release.web.database import db_session

log = logging.getLogger(__name__)
bp = Blueprint("probes", __name__)

CACHE_SECONDS = 5.0
# Longest a probe waits for the node checks (each still has its own node timeout).
NODE_DEADLINE_SECONDS = 3.0


@dataclass(frozen=True)
class NodeCheck:
    """Which nodes answered with valid credentials at ``checked_at`` (monotonic)."""

    up: tuple[str, ...]
    down: tuple[str, ...]
    checked_at: float


class NodeChecker:
    """Checks every node's health at most once per ``ttl`` seconds, shared by all threads."""

    def __init__(
        self,
        gateways: Mapping[str, Gateway],
        *,
        ttl: float = CACHE_SECONDS,
        deadline: float = NODE_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateways = gateways
        self.ttl, self.deadline, self.clock = ttl, deadline, clock
        self._lock = threading.Lock()
        self._last: NodeCheck | None = None
        self.checks_run = 0

    def current(self) -> NodeCheck:
        """The cached result, refreshed when older than ``ttl`` (one refresher at a time)."""
        with self._lock:
            last = self._last
            if last is None or self.clock() - last.checked_at >= self.ttl:
                last = self._last = self._check()
            return last

    def _check(self) -> NodeCheck:
        self.checks_run += 1
        names = list(self.gateways)
        up: list[str] = []
        if names:
            pool = ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="readyz")
            futures = {name: pool.submit(self.gateways[name].health) for name in names}
            started = self.clock()
            for name, future in futures.items():
                try:
                    health = future.result(max(0.0, self.deadline - (self.clock() - started)))
                except FutureTimeoutError:
                    log.warning("readiness: node %s did not answer within %.1f s", name, self.deadline)
                    continue
                except Exception as exc:  # noqa: BLE001 - a failing check means "not usable", never a 500
                    log.warning("readiness: node %s check failed: %s", name, type(exc).__name__)
                    continue
                if health.reachable and health.authenticated:
                    up.append(name)
            pool.shutdown(wait=False, cancel_futures=True)
        down = tuple(n for n in names if n not in up)
        return NodeCheck(tuple(up), down, self.clock())


def node_checker() -> NodeChecker:
    """The app's shared checker (created on first use)."""
    checker = current_app.extensions.get("release.node_checker")
    if checker is None:
        checker = current_app.extensions.setdefault("release.node_checker", NodeChecker(services().gateways))
    found: NodeChecker = checker
    return found


def _database_ok() -> bool:
    try:
        db_session().execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


@bp.get("/readyz")
def readyz() -> tuple[str, int, dict[str, str]]:
    """Ready to serve: 200 with what is up, else 503 saying what is down."""
    problems: list[str] = []
    if not _database_ok():
        problems.append("database")
    check = node_checker().current()
    if not check.up:
        problems.append("gateway")
    body = {
        "status": "ok" if not problems else "unavailable",
        "down": problems,
        "nodes": {"up": list(check.up), "down": list(check.down)},
    }
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return json.dumps(body) + "\n", 503 if problems else 200, headers


def _metrics_refusal() -> tuple[int, dict[str, str]] | None:
    """Why this request may not scrape (status, headers), or None when it may."""
    config = services().settings.metrics
    if not config.token and not config.allowed_ips:
        abort(404)  # off unless configured
    if config.allowed_ips:
        try:
            client = ipaddress.ip_address(request.remote_addr or "")
        except ValueError:
            return 403, {}
        if not any(client in ipaddress.ip_network(net, strict=False) for net in config.allowed_ips):
            return 403, {}
    if config.token and not bearer.matches_any([config.token]):
        return 401, bearer.challenge("metrics")
    return None


@bp.get("/metrics")
def metrics_view() -> Response:
    """Prometheus text exposition for an authorised scraper."""
    refusal = _metrics_refusal()
    if refusal is not None:
        status, headers = refusal
        return Response("not allowed\n", status, headers, content_type="text/plain")
    registry = current_app.extensions.get("release.metrics_registry")
    if registry is None:
        registry = current_app.extensions.setdefault(
            "release.metrics_registry", metrics.database_registry(services().db)
        )
    body = metrics.exposition(registry)
    return Response(body, 200, {"Cache-Control": "no-store"}, content_type=metrics.CONTENT_TYPE)
