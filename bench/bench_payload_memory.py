"""What one huge message costs a running daemon: RSS growth and the next window's latency.

A real mosquitto and a real `slewguard serve` (tiny untrained model: the cost measured here is
ingest and decoding, not inference). One sensor's 1 s windows at 12 kHz give the baseline
publish -> result latency; then, one at a time, a ~50 MB JSON window (random float32 samples
as text: a 50 kHz window of about 2.5 M samples, valid in every field but its size) and a
~50 MB binary message (a float32 header claiming 12.5 M samples, valid CRC) are published, each
followed at once by a normal window. For each: the daemon's RSS (VmRSS every 20 ms) before, at
its peak and 2 s after, the next window's latency, and what became of the big message (its
dead-letter reason, or diagnosed).

Each run is made twice: with the byte budget (``ingest.max_payload_bytes`` unset: the largest
float32 window, 12 MB here) and with it off (268435455, the MQTT maximum), which is how the
daemon behaved before it had one, except that JSON samples are now parsed without a list of
Python floats. The machine is shared: run it at full size once; ``--megabytes 5`` for a try.

Run:
    .venv/bin/python bench/bench_payload_memory.py                 # 50 MB, budget on and off
    .venv/bin/python bench/bench_payload_memory.py --megabytes 5 --budget on
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_service import rss_bytes  # noqa: E402
from slewguard.service import payload as pl  # noqa: E402
from tests.service import services  # noqa: E402

TOPIC = "plant/bench/crane1/slew/s1/vib"
DEAD = "slewguard/dead-letter"
MQTT_MAX_BYTES = 268_435_455
MIB = 2**20


class PeakRss:
    """The highest RSS of ``pid`` while running, sampled every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, rss_bytes(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def json_window(megabytes: float, seq: int) -> bytes:
    """A JSON window of about ``megabytes`` MB: random float32 samples at 50 kHz (a block of
    1000 distinct values repeated, so building it costs the bench little)."""
    rng = np.random.default_rng(seq)
    block = ",".join(repr(float(v)) for v in rng.normal(size=1000).astype(np.float32))
    repeats = max(1, int(megabytes * 1e6 / (len(block) + 1)))
    head = json.dumps({"sensor_id": "s1", "start_ns": time.time_ns(), "sample_rate_hz": 50_000.0,
                       "rpm": 1797.0, "seq": seq, "unit": "g"})
    return (head[:-1] + ', "samples": [').encode() + ",".join([block] * repeats).encode() + b"]}"


def binary_flood(megabytes: float, seq: int) -> bytes:
    """A float32 binary message of about ``megabytes`` MB whose header claims every sample in
    it (more than any window may hold) and whose CRC is valid."""
    n = int(megabytes * 1e6 / 4)
    sid = b"s1"
    head = pl.HEAD.pack(pl.MAGIC, pl.VERSION, pl.FORMAT_CODES["float32"], 1, 0, len(sid))
    body = pl.BODY.pack(time.time_ns(), 50_000.0, 1.0, 1797.0, seq, n)
    msg = head + sid + body + np.zeros(n, "<f4").tobytes()
    return msg + struct.pack("<I", zlib.crc32(msg))


class Normal:
    """Normal 1 s windows at 12 kHz of sensor s1 with increasing seq."""

    def __init__(self) -> None:
        from slewguard.signal.scenario import SimulationSpec
        from slewguard.signal.simulate import simulate

        spec = SimulationSpec(fault="healthy", bearing="cwru-6205", rpm=1797.0,
                              sample_rate_hz=12_000.0, window_seconds=1.0)
        x = simulate(spec, n_windows=1, seed=0).windows[0]
        self.template = pl.encode_binary(pl.Window("s1", 0, 12_000.0, 1797.0, 0, "g", x))
        self.start_ns, self.seq = time.time_ns(), 0

    def next(self) -> tuple[int, bytes]:
        self.seq += 1
        return self.seq, pl.restamp(self.template, self.start_ns + self.seq * 10**9, self.seq)


class Watch:
    """Arrival time of each result seq on the diag topic, and each dead letter's reason."""

    def __init__(self, port: int) -> None:
        self.diag: dict[int, float] = {}
        self.dead: list[dict] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([("plant/+/+/+/+/diag", 1), (DEAD, 1)])

    def _on_message(self, client, userdata, message) -> None:
        body = json.loads(message.payload)
        if message.topic == DEAD:
            self.dead.append(body)
        else:
            self.diag.setdefault(int(body["seq"]), time.monotonic())

    def wait(self, seq: int, timeout_s: float) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if seq in self.diag:
                return self.diag[seq]
            time.sleep(0.01)
        return None


def start_daemon(work: Path, port: int, model: Path, max_payload_bytes: int | None
                 ) -> subprocess.Popen:
    http_port = services.free_port()
    config = {
        "site": "bench",
        "mqtt": {"port": port, "client_id": f"bench-{max_payload_bytes}"},
        "sensors": [{"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205"}],
        "model": {"path": str(model)},
        "inference": {"max_batch": 8, "max_wait_ms": 20, "queue_size": 16},
        "outbox": {"path": str(work / "outbox.sqlite3")},
        "http": {"port": http_port},
    }
    if max_payload_bytes is not None:  # unset: the default, and a config older code reads
        config["ingest"] = {"max_payload_bytes": max_payload_bytes}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    log = (work / "serve.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "slewguard.cli", "serve", "--config",
                             str(work / "config.yaml")], stdout=log, stderr=log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited; see {work / 'serve.log'}") from None
            time.sleep(0.2)
    raise TimeoutError(f"daemon not ready; see {work / 'serve.log'}")


def one_window_latency(client: mqtt.Client, watch: Watch, normal: Normal) -> float:
    seq, msg = normal.next()
    sent = time.monotonic()
    client.publish(TOPIC, msg, qos=1).wait_for_publish(30)
    got = watch.wait(seq, 60)
    return float("nan") if got is None else got - sent


def hit(client, watch, normal, pid: int, big: bytes, big_seq: int) -> dict:
    """Publish ``big`` and a normal window right behind it; RSS and that window's latency."""
    time.sleep(1.0)
    before = rss_bytes(pid)
    peak = PeakRss(pid)
    dead_before = len(watch.dead)
    sent = time.monotonic()
    client.publish(TOPIC, big, qos=1).wait_for_publish(120)
    seq, msg = normal.next()
    client.publish(TOPIC, msg, qos=1).wait_for_publish(120)
    got = watch.wait(seq, 180)
    time.sleep(2.0)
    outcome = "diagnosed" if big_seq in watch.diag else "lost?"
    if len(watch.dead) > dead_before:
        outcome = "dead letter: " + watch.dead[-1]["reason"]
    return {"before": before, "peak": peak.stop(), "after": rss_bytes(pid),
            "latency_s": float("nan") if got is None else got - sent, "outcome": outcome}


def run(args: argparse.Namespace, budget: str, work: Path, model: Path) -> list[str]:
    broker = services.start_mosquitto(work / "mosquitto")
    limit = None if budget == "on" else MQTT_MAX_BYTES
    daemon = start_daemon(work, broker.port, model, limit)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    watch = Watch(broker.port)
    normal = Normal()
    rows = []
    try:
        baseline = [one_window_latency(client, watch, normal) for _ in range(5)]
        base_ms = 1000 * float(np.nanmedian(baseline))
        for kind, big in (("JSON", json_window(args.megabytes, 10**6)),
                          ("binary", binary_flood(args.megabytes, 10**6 + 1))):
            r = hit(client, watch, normal, daemon.pid, big, 10**6 + (kind == "binary"))
            rows.append(f"| {budget} | {kind} | {len(big) / 1e6:.1f} | {r['outcome']} | "
                        f"{r['before'] / MIB:.0f} | {(r['peak'] - r['before']) / MIB:+.0f} | "
                        f"{(r['after'] - r['before']) / MIB:+.0f} | "
                        f"{1000 * r['latency_s']:.0f} | {base_ms:.0f} |")
            print(rows[-1], flush=True)
    finally:
        client.loop_stop()
        client.disconnect()
        watch.client.loop_stop()
        daemon.terminate()
        daemon.wait(60)
        broker.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=50.0, help="size of each big message")
    parser.add_argument("--budget", choices=("on", "off"), action="append",
                        help="with the default byte budget, without it, or both (default)")
    args = parser.parse_args()
    from tests.service.conftest import tiny_classifier

    header = ("| budget | message | MB | outcome | RSS before MiB | peak growth MiB | "
              "growth 2 s after MiB | next window latency ms | baseline latency ms |\n"
              "|---|---|---|---|---|---|---|---|---|")
    print(header, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_payload_") as tmp:
        model = Path(tmp) / "tiny-bert"
        tiny_classifier().save(model)
        for budget in args.budget or ["on", "off"]:
            work = Path(tmp) / budget
            work.mkdir()
            run(args, budget, work, model)


if __name__ == "__main__":
    main()
