"""Daemon throughput, latency and memory through a real mosquitto and a real `slewguard serve`.

Three phases against one daemon process (10 s windows at 25.6 kHz by default):
1. throughput: publish a backlog as fast as possible; sustained windows/s between the 5th and
   the last result on the diag topic;
2. latency: publish at half that rate; publish -> result-on-diag-topic p50/p99 (includes the
   forwarder's 0.2 s outbox poll);
3. overload: publish at 10x the sustained rate for --overload-seconds, then watch as long again;
   the daemon's peak RSS (VmRSS every 0.1 s) in the first and the second half (equal when memory
   is bounded) against its RSS before, and the broker's peak RSS (it holds the backlog).
Then SIGTERM: time to drain and exit, and the exit code.

Each ``--model`` runs in turn against a fresh daemon: ``default`` and ``fast`` are the pruned
models shipped in slewguard/models/ (tree and stft band search), a family name (minilm,
tiny-bert, ...) builds that backbone with an untrained classification head (inference cost is
what matters here, not accuracy), anything else is a model directory (its card names its
features' band search; ``--features`` sets a family model's). The default compares the shipped
pruned model with the dense MiniLM it was pruned from, in the same run. Writes
out/bench_service_<model>.png (latency histograms).

Run:
    .venv/bin/python bench/bench_service.py                       # shipped pruned vs dense MiniLM
    .venv/bin/python bench/bench_service.py --model fast --model minilm --daemons 2
    .venv/bin/python bench/bench_service.py --model tiny-bert --window-seconds 2
    .venv/bin/python bench/bench_service.py --model default --runtime onnx --runtime torch
    .venv/bin/python bench/bench_service.py --model default --python /tmp/base/venv/bin/python

``--python`` runs the daemons under another interpreter, e.g. the base install that
``bench/bench_install.py --keep /tmp/base`` leaves (no torch, no scipy), as an edge box runs it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_broker import cpu_seconds as process_cpu_seconds  # noqa: E402
from slewguard.models.shipped import SHIPPED_MODELS  # noqa: E402
from slewguard.service.payload import Window, decode, encode_binary, restamp  # noqa: E402
from slewguard.signal.features import METHODS  # noqa: E402
from tests.service import services  # noqa: E402

SENSORS = 4
DIAG = "plant/+/+/+/+/diag"


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc (0 once it exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` and their threads so far (0 for one that exited)."""
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_seconds(pid)
        except OSError:
            continue
    return total


class PeakRss:
    """Samples the summed RSS of processes every 0.1 s in a thread."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.samples, self._stop = pids, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(sum(rss_bytes(pid) for pid in self.pids))

    def stop(self) -> tuple[int, int]:
        """Peak RSS over the first and the second half of the sampling: equal when bounded."""
        self._stop.set()
        self._thread.join()
        half = len(self.samples) // 2
        return max(self.samples[:half], default=0), max(self.samples[half:], default=0)


class Windows:
    """Pre-simulated windows (2 per sensor, half of them faulty), encoded once and re-stamped
    per sequence number (``payload.restamp``), so publishing is limited neither by the simulator
    nor by quantising samples: real sensors do that work on their own hardware."""

    def __init__(self, sample_rate_hz: float, window_seconds: float) -> None:
        from slewguard.signal.scenario import SimulationSpec
        from slewguard.signal.simulate import simulate

        self.fs, self.window_seconds = sample_rate_hz, window_seconds
        self.pool = []
        for i, fault in enumerate(("healthy", "healthy", "outer_race", "inner_race")):
            spec = SimulationSpec(fault=fault, bearing="cwru-6205", rpm=1797.0,
                                  sample_rate_hz=sample_rate_hz, window_seconds=window_seconds,
                                  snr_db=0.0)
            self.pool.append([encode_binary(Window(f"s{i + 1}", 0, sample_rate_hz, 1797.0, 0, "g",
                                                   x))
                              for x in simulate(spec, n_windows=2, seed=i).windows])
        self.start_ns = time.time_ns()
        self.seq = 0

    def next(self, sensor: int) -> tuple[str, bytes, tuple[str, int]]:
        """Topic, payload and (sensor, seq) key of the next window of ``sensor``."""
        seq = self.seq
        self.seq += 1
        sid = f"s{sensor + 1}"
        payload = restamp(self.pool[sensor][seq % 2],
                          self.start_ns + int(seq * self.window_seconds * 1e9), seq)
        return f"plant/bench/crane{sensor + 1}/slew/{sid}/vib", payload, (sid, seq)


class Results:
    """Subscribes to the diag topic; records arrival time per (sensor, seq)."""

    def __init__(self, port: int) -> None:
        self.arrived: dict[tuple[str, int], float] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(DIAG, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        import json

        body = json.loads(message.payload)
        self.arrived.setdefault((body["sensor"], body["seq"]), time.monotonic())

    def wait(self, keys: list, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not all(k in self.arrived for k in keys):
            time.sleep(0.05)


def publish_at(client: mqtt.Client, windows: Windows, count: int, rate_hz: float) -> dict:
    """Publish ``count`` windows round-robin over the sensors at ``rate_hz`` (0: flat out);
    returns {key: publish time}."""
    sent: dict[tuple[str, int], float] = {}
    start = time.monotonic()
    for i in range(count):
        if rate_hz > 0:
            time.sleep(max(0.0, start + i / rate_hz - time.monotonic()))
        topic, payload, key = windows.next(i % SENSORS)
        sent[key] = time.monotonic()
        client.publish(topic, payload, qos=1).wait_for_publish(30)
    return sent


def save_model(family: str, path: Path, features: str) -> str:
    if family in SHIPPED_MODELS or Path(family).is_dir():
        import shutil

        shutil.copytree(SHIPPED_MODELS.get(family, Path(family)), path)
        return f"{family} (trained)"
    from slewguard.models import backbones
    from slewguard.models.classifier import FaultClassifier
    from slewguard.signal import textify
    from slewguard.signal.scenario import FAULT_CLASSES

    backbone = backbones.build(family, len(FAULT_CLASSES))
    clf = FaultClassifier(backbone.model, backbone.tokenizer, FAULT_CLASSES,
                          textify.TEMPLATE_VERSION,
                          {"family": family, "base_model": backbone.base_model,
                           "features": features})
    clf.save(path)
    return backbone.base_model


def features_of(model: Path) -> str:
    """What the daemon computes for the model: the band search its card names, or, for a
    model of template t3, nothing beyond the evidence stage."""
    from slewguard.models.card import read

    card = read(model)
    return "none (t3 reads the evidence)" if card.template_version == "t3" else card.features


def start_daemon(work: Path, broker_port: int, model: Path, index: int = 0,
                 shared: bool = False, max_batch: int = 16, signal_threads: int | None = None,
                 dtype: str = "float32", evidence: bool = True,
                 runtime: str | None = None, python: str = sys.executable,
                 ) -> tuple[subprocess.Popen, int]:
    """``slewguard serve`` number ``index`` (its files under work/d<index>); ``shared`` splits
    the sensors' topics with the other daemons through a shared subscription;
    ``signal_threads``, ``dtype``, ``evidence`` and ``runtime`` are the config's
    inference.signal_threads, model.dtype, evidence.enabled and model.runtime (None: the
    config's default); ``python`` the interpreter it runs under."""
    work = work / f"d{index}"
    work.mkdir(parents=True, exist_ok=True)
    http_port = services.free_port()
    mqtt_config = {"port": broker_port, "client_id": f"bench{index}",
                   "receive_maximum": 2 * max_batch}
    if shared:
        mqtt_config["shared_group"] = "bench"
    config = {
        "site": "bench",
        "mqtt": mqtt_config,
        "sensors": [{"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205"}],
        "model": {"path": str(model), "dtype": dtype,
                  **({"runtime": runtime} if runtime else {})},
        "inference": {"max_batch": max_batch, "max_wait_ms": 50, "queue_size": 2 * max_batch,
                      "signal_threads": signal_threads},
        "outbox": {"path": str(work / "outbox.sqlite3")},
        "http": {"port": http_port},
        "evidence": {"enabled": evidence},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    log = (work / "serve.log").open("ab")
    proc = subprocess.Popen([python, "-m", "slewguard.cli", "serve", "--config",
                             str(work / "config.yaml")], stdout=log, stderr=log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1):
                return proc, http_port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited; see {work / 'serve.log'}") from None
            time.sleep(0.2)
    raise TimeoutError(f"daemon not ready; see {work / 'serve.log'}")


def phase_throughput(client, windows, results, count: int,
                     pids: dict[str, list[int]]) -> tuple[float, dict[str, float]]:
    """Sustained windows/s, and CPU ms per window of each process in ``pids`` over the phase."""
    cpu = {name: cpu_seconds(group) for name, group in pids.items()}
    sent = publish_at(client, windows, count, 0)
    keys = list(sent)
    results.wait(keys, timeout_s=count * 10.0)
    cpu = {name: 1000 * (cpu_seconds(group) - cpu[name]) / count
           for name, group in pids.items()}
    times = sorted(results.arrived[k] for k in keys if k in results.arrived)
    skip = min(5, len(times) - 2)
    return (len(times) - 1 - skip) / (times[-1] - times[skip]), cpu


def phase_latency(client, windows, results, rate_hz: float, seconds: float) -> np.ndarray:
    sent = publish_at(client, windows, max(8, int(rate_hz * seconds)), rate_hz)
    results.wait(list(sent), timeout_s=120)
    return np.array([results.arrived[k] - t for k, t in sent.items() if k in results.arrived])


def phase_overload(client, windows, rate_hz: float, seconds: float,
                   pids: list[list[int]]) -> list:
    samplers = [PeakRss(group) for group in pids]
    count = int(rate_hz * seconds)
    started = time.monotonic()
    publish_at(client, windows, count, rate_hz)
    achieved = count / (time.monotonic() - started)
    time.sleep(seconds)  # the daemon keeps working through the backlog
    return [achieved, *[s.stop() for s in samplers]]


def stage_means_ms(http_port: int) -> dict[str, float]:
    """Mean seconds per pipeline stage from the daemon's own histograms, in ms."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "slewguard_stage_duration_seconds":
            continue
        for sample in family.samples:
            stage = sample.labels.get("stage")
            if sample.name.endswith("_sum"):
                sums[stage] = sample.value
            elif sample.name.endswith("_count"):
                counts[stage] = sample.value
    return {k: 1000 * sums[k] / counts[k] for k in sums if counts.get(k)}


def plot(latencies: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(latencies * 1000, bins=30)
    ax.set_xlabel("publish -> result on the diag topic (ms)")
    ax.set_ylabel("windows")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", help="'default' or 'fast' (the shipped "
                        "pruned models: tree or stft band search), "
                        "a backbone family with an untrained head, or a model directory; "
                        "repeatable (default: default and minilm)")
    parser.add_argument("--features", choices=METHODS, default="stft",
                        help="band search of a family model (a model directory's card decides)")
    parser.add_argument("--sample-rate-hz", type=float, default=25600.0)
    parser.add_argument("--window-seconds", type=float, default=10.0)
    parser.add_argument("--throughput-windows", type=int, default=40)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--overload-seconds", type=float, default=6.0)
    parser.add_argument("--max-batch", type=int, default=16,
                        help="inference.max_batch (the config default); queue and MQTT receive "
                        "maximum are twice it")
    parser.add_argument("--daemons", type=int, default=1,
                        help="daemon processes splitting the load on a shared subscription "
                        "(CPU and RSS are their sums; stage means are the first's)")
    parser.add_argument("--signal-threads", type=int, default=None,
                        help="inference.signal_threads of each daemon (default: one per core "
                        "for one daemon, 1 for several)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="model.dtype of each daemon")
    parser.add_argument("--runtime", action="append", choices=("onnx", "torch"),
                        help="model.runtime of the daemons; repeatable: every model runs with "
                             "each (default: the config's, onnx where the model has model.onnx)")
    parser.add_argument("--no-evidence", dest="evidence", action="store_false",
                        help="evidence.enabled false: the model alone, no evidence stage")
    parser.add_argument("--out", type=Path, default=ROOT / "out", help="directory for the PNGs")
    parser.add_argument("--python", action="append",
                        help="interpreter of the daemons; repeatable: every model runs under "
                        "each (default: this one), e.g. a base install's venv/bin/python")
    args = parser.parse_args()
    if args.signal_threads is None and args.daemons > 1:
        args.signal_threads = 1
    rows = []
    for model in args.model or ["default", "minilm"]:
        for runtime in args.runtime or [None]:
            for python in args.python or [sys.executable]:
                with tempfile.TemporaryDirectory() as tmp:
                    rows.append(run(args, model, Path(tmp), runtime, python))
    print("\n| model | features | windows/s | daemon CPU ms/window | p50 ms | p99 ms | "
          "overload peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['features']} | {r['rate']:.2f} | {r['daemon_cpu_ms']:.1f} | "
              f"{r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | "
              f"{r['peak_mib']:.0f} |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"{first['model']} vs {last['model']}: throughput "
              f"x{first['rate'] / last['rate']:.2f}, p99 x{last['p99_ms'] / first['p99_ms']:.2f} "
              "lower")


def run(args: argparse.Namespace, model: str, work: Path, runtime: str | None = None,
        python: str = sys.executable) -> dict:
    broker = services.start_mosquitto(work / "mosquitto", extra=["max_queued_messages 100000"])
    base_model = save_model(model, work / "model", args.features)
    daemons = [start_daemon(work, broker.port, work / "model", i, args.daemons > 1,
                            args.max_batch, args.signal_threads, args.dtype, args.evidence,
                            runtime, python)
               for i in range(args.daemons)]
    pids = [proc.pid for proc, _ in daemons]
    windows = Windows(args.sample_rate_hz, args.window_seconds)
    assert decode(windows.next(0)[1]).samples.size == int(args.sample_rate_hz *
                                                          args.window_seconds)
    results = Results(broker.port)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(64)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        rss_idle = sum(rss_bytes(pid) for pid in pids)
        rate, cpu = phase_throughput(client, windows, results, args.throughput_windows,
                                     {"daemon": pids, "broker": [broker.proc.pid],
                                      "bench (publisher + result reader)": [os.getpid()]})
        lat = phase_latency(client, windows, results, rate / 2, args.latency_seconds)
        achieved, (daemon_first, daemon_peak), (_, broker_peak) = phase_overload(
            client, windows, rate * 10, args.overload_seconds, [pids, [broker.proc.pid]])
        stages = stage_means_ms(daemons[0][1])
        started = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        code = max(proc.wait(300) for proc, _ in daemons)
        drain_s = time.monotonic() - started
    finally:
        client.loop_stop()
        for proc, _ in daemons:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        broker.stop()
    mib = 2**20
    print(f"\nclassifier: {model} ({base_model}), features {features_of(work / 'model')}; "
          "windows "
          f"{args.window_seconds:g} s at {args.sample_rate_hz:g} Hz (cwru-6205, 1797 rpm), "
          f"{args.daemons} daemon process(es), signal threads "
          f"{args.signal_threads or 'one per core'}, model dtype {args.dtype}, runtime "
          f"{runtime or 'the config default'}, daemon interpreter {python}, "
          f"{os.cpu_count()} CPU cores")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (the 2 cores are shared)")
    print(f"sustained throughput: {rate:.2f} windows/s")
    print("CPU per window during it, ms: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
          + f" ({os.cpu_count()} cores give {1000 * (os.cpu_count() or 1) / rate:.1f} ms per "
          "window at this rate)")
    print("daemon mean per call, ms: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
          + " (decode per window; features/inference/outbox per micro-batch)")
    print(f"latency at {rate / 2:.2f} windows/s ({lat.size} windows): p50 "
          f"{np.percentile(lat, 50) * 1000:.0f} ms, p99 {np.percentile(lat, 99) * 1000:.0f} ms")
    print(f"overload at {achieved:.1f} windows/s for {args.overload_seconds:g} s: daemon RSS "
          f"{rss_idle / mib:.0f} MiB before, peak {daemon_first / mib:.0f} MiB in the first "
          f"half, {daemon_peak / mib:.0f} MiB in the second; broker peak "
          f"{broker_peak / mib:.0f} MiB")
    print(f"SIGTERM: exit code {code} after {drain_s:.1f} s (drains the queue, flushes outbox)")
    png = args.out / f"bench_service_{Path(model).name}.png"
    plot(lat, png, f"{model}, {args.window_seconds:g} s @ {args.sample_rate_hz:g} Hz, "
         f"{rate / 2:.2f} windows/s")
    print(f"wrote {png}")
    venv = "" if python == sys.executable else f" [{Path(python).parents[1]}]"
    return {"model": model + (f" ({runtime})" if runtime else "") + venv,
            "features": features_of(work / "model") + (" + evidence" if args.evidence else ""),
            "rate": rate,
            "p50_ms": np.percentile(lat, 50) * 1000,
            "p99_ms": np.percentile(lat, 99) * 1000, "peak_mib": daemon_peak / mib,
            "daemon_cpu_ms": cpu["daemon"]}


if __name__ == "__main__":
    main()
