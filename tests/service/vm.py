"""A real VictoriaMetrics for tests: free port, tmp data dir, stopped by PID, restartable.

It speaks the InfluxDB v2 write API that influxdb-client uses. Quirks (see SERVICES.md): metric
name = <measurement>_<field>, tags become labels, timestamps are cut to milliseconds, reads need
``force_flush`` first. Import the ``victoria_metrics`` fixture into a test module to use it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.service.services import free_port, wait_port

VICTORIA_METRICS = shutil.which("victoria-metrics")


@dataclass
class VictoriaMetrics:
    """One victoria-metrics process; ``restart()`` keeps its port and data directory."""

    directory: Path
    port: int
    dedup: bool = False
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VictoriaMetrics:
        """Start (again) on the same port and data directory.

        VictoriaMetrics keeps every sample it is sent, even two on the same series and
        timestamp; InfluxDB overwrites such a point. ``dedup=True`` adds
        -dedup.minScrapeInterval=1ms, which keeps one sample per series and millisecond and so
        reads back like InfluxDB. Without it, exports show exactly what was written.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "vm.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [VICTORIA_METRICS, f"-httpListenAddr=127.0.0.1:{self.port}",
                 f"-storageDataPath={self.directory / 'data'}", "-search.latencyOffset=1s",
                 "-loggerLevel=WARN", *(["-dedup.minScrapeInterval=1ms"] if self.dedup else [])],
                stdout=log, stderr=log)
        wait_port(self.port, proc=self.proc, timeout_s=30)
        self._wait_healthy()
        return self

    def _wait_healthy(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"victoria-metrics on {self.url} is not healthy; see "
                           f"{self.directory / 'vm.log'}")

    def stop(self) -> None:
        """SIGTERM by PID (VictoriaMetrics flushes its buffers on the way out)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def force_flush(self) -> None:
        """Make everything written so far visible to reads."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass

    def export(self, match: str = '{__name__!=""}') -> list[dict]:
        """Every series matching ``match`` as /api/v1/export returns it (one dict per series:
        ``metric`` labels, ``values``, ``timestamps`` in ms), after a flush."""
        self.force_flush()
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as response:
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]

    def points(self, metric: str) -> dict[tuple, list[tuple[int, float]]]:
        """``metric``'s samples as {sorted label items: [(timestamp_ms, value), ...]}."""
        out: dict[tuple, list[tuple[int, float]]] = {}
        for series in self.export(f'{{__name__="{metric}"}}'):
            labels = tuple(sorted((k, v) for k, v in series["metric"].items() if k != "__name__"))
            out.setdefault(labels, []).extend(zip(series["timestamps"], series["values"],
                                                  strict=True))
        return {k: sorted(v) for k, v in out.items()}


def start_victoria_metrics(directory: Path, port: int | None = None,
                           dedup: bool = False) -> VictoriaMetrics:
    """Start VictoriaMetrics on a free 127.0.0.1 port with its data in ``directory``."""
    return VictoriaMetrics(directory, port or free_port(), dedup).start()


@pytest.fixture
def victoria_metrics(tmp_path):
    """A fresh VictoriaMetrics for one test; stopped by PID at the end."""
    if VICTORIA_METRICS is None:
        pytest.skip("victoria-metrics binary not installed (apt: victoria-metrics)")
    vm = start_victoria_metrics(tmp_path / "vm")
    yield vm
    vm.stop()


class StatusServer:
    """A real local HTTP server for the InfluxDB write path that answers what ``decide`` says.

    VictoriaMetrics answers 204 to anything (it parses asynchronously), so permanent errors
    (400) and throttling (429/503) come from this server instead. ``decide(body) -> (status,
    message)``; every request body is recorded in ``bodies``.
    """

    def __init__(self, decide: Callable[[str], tuple[int, str]]) -> None:
        self.decide, self.bodies = decide, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                outer.bodies.append(body)
                status, message = outer.decide(body)
                data = json.dumps({"code": "invalid", "message": message}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data) if status != 204 else 0))
                self.end_headers()
                if status != 204:
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
