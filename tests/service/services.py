"""Real Mosquitto and Prometheus processes for tests: free ports, tmp dirs, stopped by PID.

Never the broker on 1883: every test gets its own, so it can stop, restart and reconfigure it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                           if Path("/usr/sbin/mosquitto").exists() else None)
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, host: str = "127.0.0.1", timeout_s: float = 15.0,
              proc: subprocess.Popen | None = None) -> None:
    """Poll until ``host:port`` accepts a connection; raise with a hint when it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")



def wait_until(predicate, timeout_s: float = 60.0, what: str = "condition", poll_s: float = 0.1):
    """Poll ``predicate`` until it returns something truthy (returned) or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what} not reached within {timeout_s} s")


def http_get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET, HTTP error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Mosquitto:
    """One mosquitto process; ``restart()`` keeps port and persistence directory."""

    directory: Path
    port: int
    persistence: bool = False
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log(self) -> Path:
        return self.directory / "mosquitto.log"

    def write_conf(self) -> None:
        lines = [f"listener {self.port} 127.0.0.1", "log_dest stderr", "log_type error",
                 "log_type warning", "log_type notice"]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.directory}/",
                      "autosave_interval 1"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to a user that cannot read tmp files
        if not any(line.startswith(("allow_anonymous", "password_file")) for line in self.extra):
            lines.append("allow_anonymous true")
        self.conf.write_text("\n".join(lines + self.extra) + "\n")

    def start(self) -> Mosquitto:
        self.write_conf()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file on the way out."""
        _stop(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()


def start_mosquitto(directory: Path, *, persistence: bool = False,
                    extra: list[str] | None = None, port: int | None = None) -> Mosquitto:
    """Start mosquitto on a free 127.0.0.1 port with its config, log and data in ``directory``.

    ``extra`` adds config lines, e.g. ``["max_inflight_messages 4"]`` or a password_file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    return Mosquitto(directory, port or free_port(), persistence, list(extra or [])).start()


@dataclass
class Prometheus:
    """One Prometheus process scraping ``targets`` every second."""

    directory: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, promql: str) -> list[dict]:
        """Instant query through the HTTP API; returns ``data.result``."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, promql: str, timeout_s: float = 30.0) -> list[dict]:
        """Poll ``query`` until it returns a non-empty result."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.5)
        raise TimeoutError(f"{promql!r} stayed empty for {timeout_s} s; see {self.directory}")

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait for /-/ready (the port opens before the TSDB is; queries answer 503 till then)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"prometheus never became ready; see {self.directory}")

    def stop(self) -> None:
        _stop(self.proc)


def start_prometheus(directory: Path, targets: list[str]) -> Prometheus:
    """Start Prometheus (1 s scrape interval) on a free port, scraping ``host:port`` targets."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "slewguard", "static_configs": [{"targets": targets}]}],
    }))
    port = free_port()
    with (directory / "prometheus.log").open("ab") as log:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
             f"--storage.tsdb.path={directory / 'data'}"], stdout=log, stderr=log)
    wait_port(port, proc=proc, timeout_s=30)
    prom = Prometheus(directory, port, proc)
    prom.wait_ready()
    return prom


def password_file(directory: Path, user: str, password: str) -> Path:
    """A mosquitto password file (mosquitto_passwd) with one user."""
    path = directory / "passwd"
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), user, password], check=True,
                   capture_output=True)
    return path


def make_tls(directory: Path, server_days: int = 2) -> dict[str, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1/localhost (openssl).

    ``server_days=-1`` gives a server certificate that expired a day before it was issued."""
    directory.mkdir(parents=True, exist_ok=True)
    p = {name: directory / name for name in ("ca.key", "ca.crt", "server.key", "server.csr",
                                             "server.crt", "san.ext")}
    p["san.ext"].write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(p["ca.key"]), "-out", str(p["ca.crt"]))
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(p["server.key"]), "-out", str(p["server.csr"]))
    ssl("x509", "-req", "-in", str(p["server.csr"]), "-CA", str(p["ca.crt"]), "-CAkey",
        str(p["ca.key"]), "-CAcreateserial", "-days", str(server_days),
        "-extfile", str(p["san.ext"]), "-out", str(p["server.crt"]))
    return p


class Collector:
    """A plain paho subscriber that records (topic, payload, properties) of every message."""

    def __init__(self, port: int, topics: list[str], client_id: str = "collector") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, object]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, bytes(m.payload), m.properties))
        ready = __import__("threading").Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        assert ready.wait(10), "collector subscription not acknowledged"

    def wait_for(self, count: int, timeout_s: float = 20.0, topic_prefix: str = "") -> list:
        """Wait until ``count`` messages under ``topic_prefix`` arrived; returns them."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = [m for m in self.messages if m[0].startswith(topic_prefix)]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise TimeoutError(f"{len(got)} of {count} messages under {topic_prefix!r} arrived")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish(port: int, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
    """Publish QoS 1 messages and wait until the broker has acknowledged each."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1, retain=retain)
                 for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
