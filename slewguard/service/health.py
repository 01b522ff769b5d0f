"""The daemon's HTTP face on the metrics port: ``/metrics``, ``/healthz`` and ``/readyz``.

``/healthz`` answers 200 while the process serves HTTP at all (a liveness probe). ``/readyz``
runs every readiness check (broker connected, model loaded, outbox writable): 200 with
``{"ready": true}`` when each passes, else 503 with ``{"ready": false, "reasons": {...}}`` naming
each failed check. A check is a callable returning None when fine or a short reason string.

Example:
    >>> from slewguard.service.metrics import Metrics
    >>> server = HealthServer(Metrics(), {"model": lambda: None}, port=0)
    >>> server.start(); server.port > 0
    True
    >>> server.stop()
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST

from slewguard.service.metrics import Metrics

log = logging.getLogger(__name__)
Check = Callable[[], str | None]


def failed_checks(checks: Mapping[str, Check]) -> dict[str, str]:
    """Run each check; returns ``{name: reason}`` for those that fail (a raising check fails).

    Example:
        >>> failed_checks({"broker": lambda: "not connected", "model": lambda: None})
        {'broker': 'not connected'}
    """
    reasons: dict[str, str] = {}
    for name, check in checks.items():
        try:
            reason = check()
        except Exception as exc:  # a broken check means "not ready", never a 500
            reason = f"check raised {type(exc).__name__}: {exc}"
        if reason is not None:
            reasons[name] = reason
    return reasons


class HealthServer:
    """A threaded HTTP server for metrics and probes; ``port=0`` picks a free port."""

    def __init__(self, metrics: Metrics, checks: Mapping[str, Check],
                 host: str = "127.0.0.1", port: int = 9108) -> None:
        self.metrics = metrics
        self.checks = dict(checks)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http",
                                        daemon=True)
        self._thread.start()
        log.info("metrics and probes on http://%s:%d", *self._server.server_address[:2])

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def _handler_for(owner: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, owner.metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send_json(200, {"alive": True})
            elif path == "/readyz":
                reasons = failed_checks(owner.checks)
                body = {"ready": not reasons, "reasons": reasons}
                self._send_json(503 if reasons else 200, body)
            else:
                self._send_json(404, {"error": f"no route {path}; try /metrics /healthz /readyz"})

        def _send_json(self, status: int, body: dict) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("http: " + format, *args)

    return Handler
