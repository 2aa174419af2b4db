"""Serving a simulator over HTTP on a local port, in a background thread."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from release.config import NodeSettings
from release.devtools.serving import UnversionedHandler
from release.devtools.simulator.node import HalonSimulator


class _QuietHandler(UnversionedHandler):
    """Keeps per-request access lines out of test and demo output; errors still print."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SimulatorServer:
    """Serves a :class:`HalonSimulator` on 127.0.0.1 in a daemon thread (port 0: any free one)."""

    def __init__(self, sim: HalonSimulator | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim or HalonSimulator()
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server (the node's ``api_url``)."""
        if self._server is None:
            raise RuntimeError("the simulator server is not running")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> SimulatorServer:
        """Bind and serve in the background; returns self."""
        if self._server is None:
            self.sim.reopen()
            self._server = make_server(self.host, self.port, self.sim.app, threaded=True, request_handler=_QuietHandler)
            # A short poll interval keeps stop() fast (tests start one server each).
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="halon-simulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is None:
            return
        self.sim.close()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def node_settings(self, name: str = "sim", **overrides: Any) -> NodeSettings:
        """Settings for a node of the simulator's generation pointing at this server.

        5.x: the first user's Basic credentials. 6.x: ``type="halon6"``, the first API key,
        ``halon_version="6.<minor>"`` and quarantine markers on the simulator's marker key.
        """
        sim = self.sim
        values: dict[str, Any]
        if sim.generation == 5:
            username, password = next(iter(sim.users.items()), ("", ""))
            values = {"username": username, "password": password}
        else:
            values = {
                "type": "halon6",
                "api_key": next(iter(sim.api_keys), ""),
                "halon_version": f"6.{sim.minor}",
                "short_quarantine": f"{sim.marker_key}=1day",
                "long_quarantine": f"{sim.marker_key}=7days",
            }
        return NodeSettings(name=name, api_url=self.url, **{**values, **overrides})

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
