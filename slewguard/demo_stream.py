"""The streaming half of ``slewguard demo``: broker, sensors, daemon, live table, summary.

Everything runs on this machine with nothing to set up: an embedded MQTT broker (mosquitto when
installed, else amqtt in-process), a simulated fleet of slewing bearings (some develop faults),
the daemon (``service.App``) with the shipped pruned model, its SQLite outbox as the store and its
Prometheus endpoint. The live table reads the outbox; the summary scores every stored verdict
against the simulator's ground truth and measures latency from publish to durable storage.

Example:
    $ slewguard demo --windows 8 --sensors 6 --rate-hz 1
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from slewguard.service.metrics import Metrics

BROKERS = ("auto", "mosquitto", "amqtt")
TRUTH_CLASSES = ("healthy", "inner_race", "outer_race", "rolling_element")
RAMP_WINDOWS = 3  # a developing fault reaches full severity at its third window
COMMISSIONING_WINDOWS = 2  # healthy windows first: each bearing's baseline (evidence stage)
MAX_SEVERITY = 2.0
FALLBACK_RECIPE = "tiny-bert/v2: 4 windows x 3 severities x 4 classes, 50 epochs, lr 8e-3"
QUIET_LOGGERS = ("slewguard.service", "amqtt", "transitions")


@dataclass
class Broker:
    """A running embedded broker and how to reach it; ``stop()`` ends it."""

    kind: str  # "mosquitto" | "amqtt"
    port: int
    protocol: str  # MQTT protocol the daemon should speak: "5" or "3.1.1"
    username: str | None  # amqtt queues for persistent sessions only for named clients
    stop: Callable[[], None]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout_s: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the embedded broker did not open 127.0.0.1:{port} within {timeout_s} s")


def mosquitto_binary() -> str | None:
    """Path of the mosquitto executable (Debian puts it in /usr/sbin), or None."""
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return found if Path(found).is_file() else None


def start_broker(kind: str, workdir: Path) -> Broker:
    """Start an MQTT broker on 127.0.0.1 and a free port: ``kind`` auto, mosquitto or amqtt.

    Example:
        >>> broker = start_broker("amqtt", Path("/tmp"))   # doctest: +SKIP
        >>> broker.stop()                                  # doctest: +SKIP
    """
    if kind not in BROKERS:
        raise ValueError(f"broker={kind!r} must be one of {', '.join(BROKERS)}")
    binary = mosquitto_binary()
    if kind == "mosquitto" and binary is None:
        raise ValueError("broker='mosquitto' but no mosquitto binary is installed: "
                         "apt-get install mosquitto, or use --broker amqtt")
    if kind == "amqtt" or binary is None:
        return _start_amqtt(free_port())
    return _start_mosquitto(binary, free_port(), workdir)


def _start_mosquitto(binary: str, port: int, workdir: Path) -> Broker:
    conf = workdir / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false",
             "log_dest stderr", "log_type error", "log_type warning"]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to a user that cannot read the temp dir
    conf.write_text("\n".join(lines) + "\n")
    log = (workdir / "mosquitto.log").open("ab")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)

    def stop() -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()

    try:
        _wait_port(port, 15.0, lambda: proc.poll() is None)
    except RuntimeError:
        stop()
        raise
    return Broker("mosquitto", port, "5", None, stop)


def _start_amqtt(port: int) -> Broker:
    from amqtt.broker import Broker as AmqttBroker

    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
              "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                          {"allow_anonymous": False}}}
    loop = asyncio.new_event_loop()
    started = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            broker = loop.run_until_complete(_amqtt_started(AmqttBroker, config))
        except BaseException as exc:  # reported to the starting thread
            errors.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(broker.shutdown())
        loop.close()

    thread = threading.Thread(target=serve, name="amqtt", daemon=True)
    thread.start()
    started.wait(30)  # Broker.start() returns once the listener is bound
    if errors:
        raise RuntimeError(f"amqtt did not start on 127.0.0.1:{port}: {errors[0]}")

    def stop() -> None:
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(15)

    return Broker("amqtt", port, "3.1.1", "slewguard-demo", stop)


async def _amqtt_started(broker_class: Any, config: dict) -> Any:
    broker = broker_class(config)  # needs the running loop
    await broker.start()
    return broker


def demo_model(args: Any, console: Console) -> tuple[Any, str]:
    """The classifier for the daemon and a line saying where it came from.

    ``--model DIR``, else the shipped model, else a tiny BERT trained here on simulated windows
    of the demo fleet's settings (cached, so the next run starts at once).
    """
    from slewguard import models
    from slewguard.models.shipped import shipped_model_dir

    if args.model is not None:
        return models.load(args.model), f"from --model {args.model}"
    shipped = shipped_model_dir()
    if (shipped / "card.json").is_file():
        clf = models.load(shipped)
        return clf, f"shipped model {shipped.name} ({clf.card.get('family', '?')}, pruned)"
    cache = _fallback_cache_dir(args)
    if (cache / "card.json").is_file():
        return models.load(cache), (f"[yellow]no shipped model found[/]: using the tiny one "
                                    f"trained on an earlier run ({cache})")
    started = time.perf_counter()
    clf = train_fallback(args, console)
    clf.save(cache)
    return clf, (f"[yellow]no shipped model found[/]: trained a tiny one in "
                 f"{time.perf_counter() - started:.0f} s (cached in {cache})")


def _fallback_cache_dir(args: Any) -> Path:
    from slewguard.models.backbones import default_cache_dir
    from slewguard.signal.textify import TEMPLATE_VERSION

    key = json.dumps([FALLBACK_RECIPE, TEMPLATE_VERSION, args.bearing, args.rpm,
                      args.sample_rate_hz, args.window_seconds, args.snr_db])
    return default_cache_dir() / f"demo-tiny-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def train_fallback(args: Any, console: Console) -> Any:
    """A tiny BERT trained on simulated windows at the fleet's settings (seconds, not minutes)."""
    import torch
    from rich.progress import track

    from slewguard.models import train_classifier
    from slewguard.signal.features import extract
    from slewguard.signal.kinematics import preset
    from slewguard.signal.scenario import SimulationSpec
    from slewguard.signal.simulate import simulate
    from slewguard.signal.textify import textify_table

    severities = [MAX_SEVERITY * (k + 1) / RAMP_WINDOWS for k in range(RAMP_WINDOWS)]
    combos = [(c, s) for c in TRUTH_CLASSES for s in severities]
    train: tuple[list[str], list[str]] = ([], [])
    test: tuple[list[str], list[str]] = ([], [])
    for i, (fault, severity) in enumerate(track(combos, "simulating training windows",
                                                console=console, transient=True)):
        spec = SimulationSpec(fault=fault, bearing=args.bearing, rpm=args.rpm,
                              sample_rate_hz=args.sample_rate_hz,
                              window_seconds=args.window_seconds, snr_db=args.snr_db,
                              severity=severity)
        sim = simulate(spec, n_windows=5, seed=7_000_000 + i)  # the fleet uses other seeds
        texts = textify_table(extract(sim.windows, spec.sample_rate_hz, preset(args.bearing),
                                      rpm=sim.rpm))
        train[0].extend(texts[:4])
        train[1].extend([fault] * 4)
        test[0].append(texts[4])
        test[1].append(fault)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is several times faster on a busy box
    try:
        for seed in range(3):  # a tiny model from scratch sometimes collapses: try another seed
            with warnings.catch_warnings():  # train.py's float(loss) UserWarning
                warnings.simplefilter("ignore", UserWarning)
                clf, _ = train_classifier(*train, *test, classes=TRUTH_CLASSES, family="tiny-bert",
                                          epochs=50, lr=8e-3, batch_size=8,
                                          max_length=64, seed=seed)
            if clf.card["metrics"]["accuracy"]["train"] >= 0.9:
                break
    finally:
        torch.set_num_threads(threads)
    return clf


def commissioning(args: Any) -> int:
    """Healthy windows each bearing sends first (at most all but its last one)."""
    return min(COMMISSIONING_WINDOWS, max(0, args.windows - 1))


def fleet_spec(args: Any) -> Any:
    """The simulated fleet: every bearing commissioned healthy, then half of them develop
    inner/outer/ball faults."""
    from slewguard.service.publisher import FleetSpec

    return FleetSpec(sensors=args.sensors, faulty_fraction=0.5, bearing=args.bearing,
                     rpm=args.rpm, sample_rate_hz=args.sample_rate_hz,
                     window_seconds=args.window_seconds, snr_db=args.snr_db,
                     max_severity=MAX_SEVERITY, ramp_windows=RAMP_WINDOWS,
                     healthy_windows=commissioning(args), seed=args.seed)


def daemon_config(broker: Broker, fleet: Any, workdir: Path) -> Any:
    """The daemon's ServiceConfig: this broker, the fleet's bearing, outbox in ``workdir``,
    each bearing's baseline from the fleet's commissioning windows."""
    from slewguard.service.config import config_from_dict

    spec = fleet.spec
    return config_from_dict({
        "site": spec.site,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "protocol": broker.protocol,
                 "client_id": "slewguard-demo", "username": broker.username,
                 "topics": [f"plant/{spec.site}/+/+/+/vib"]},
        "sensors": [{"topic_filter": "plant/+/+/+/+/vib", "bearing": spec.bearing,
                     "sample_rate_hz": spec.sample_rate_hz}],
        "outbox": {"path": str(workdir / "outbox.sqlite3")},
        "http": {"host": "127.0.0.1", "port": 0},
        "evidence": {"baseline_windows": max(1, spec.healthy_windows)},
    }, env={})  # the demo ignores SLEWGUARD_* overrides meant for a real deployment


@dataclass
class Ledger:
    """What was published (when) and what the outbox holds, keyed by (sensor id, window index)."""

    published_s: dict[tuple[str, int], float] = field(default_factory=dict)
    stored: dict[tuple[str, int], tuple[Any, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    publisher_error: str = ""

    def n_published(self) -> int:
        with self.lock:
            return len(self.published_s)


def publish_fleet(fleet: Any, client: Any, rounds: int, rate_hz: float, ledger: Ledger,
                  stop: threading.Event) -> None:
    """Publish ``rounds`` windows per sensor (QoS 1), ``rate_hz`` rounds per second."""
    period_s = 1.0 / rate_hz if rate_hz > 0 else 0.0
    next_round = time.monotonic()
    try:
        for k in range(rounds):
            infos = []
            for sensor in fleet.sensors:
                if stop.is_set():
                    return
                topic, payload = fleet.message(sensor, k)
                with ledger.lock:
                    ledger.published_s[(sensor.sensor_id, k)] = time.time()
                infos.append(client.publish(topic, payload, qos=1))
            for info in infos:
                info.wait_for_publish(30)
            next_round += period_s
            stop.wait(max(0.0, next_round - time.monotonic()))
    except Exception as exc:  # shown in the summary; the main loop stops waiting
        ledger.publisher_error = f"{type(exc).__name__}: {exc}"


def read_outbox(path: Path, ledger: Ledger, after_id: int) -> int:
    """Add outbox rows with id > ``after_id`` to the ledger; returns the highest id seen."""
    from slewguard.service.outbox import read_results

    rows = read_results(path, after_id=after_id)
    with ledger.lock:
        for row_id, result, created_s in rows:
            ledger.stored[(result.sensor, result.seq)] = (result, float(created_s))
            after_id = max(after_id, row_id)
    return after_id


def live_table(fleet: Any, ledger: Ledger, rounds: int) -> Table:
    """One row per bearing: simulated truth, windows stored, last verdict, confidence, agreement."""
    table = Table(title="bearings: the daemon's verdicts against the simulated truth",
                  box=box.SIMPLE_HEAD, caption="sev: simulated fault severity; agree: verdicts "
                  "that match the truth")
    for name, justify in (("bearing", "left"), ("truth", "left"), ("sev", "right"),
                          ("windows", "right"), ("last verdict", "left"),
                          ("conf", "right"), ("agree", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    with ledger.lock:
        stored = dict(ledger.stored)
    for sensor in fleet.sensors:
        mine = sorted((k, r) for (sid, k), (r, _) in stored.items() if sid == sensor.sensor_id)
        k_last = mine[-1][0] if mine else 0
        severity = fleet.severity(sensor, k_last)
        if not mine:
            table.add_row(f"crane{sensor.index + 1}/{sensor.sensor_id}", sensor.fault,
                          f"{severity:.1f}" if severity else "-", f"0/{rounds}", "-", "-", "-")
            continue
        last = mine[-1][1]
        right = sum(r.predicted == fleet.truth(sensor, k) for k, r in mine)
        colour = "green" if last.predicted == fleet.truth(sensor, k_last) else "red"
        table.add_row(f"crane{sensor.index + 1}/{sensor.sensor_id}", sensor.fault,
                      f"{severity:.1f}" if severity else "-", f"{len(mine)}/{rounds}",
                      f"[{colour}]{last.predicted}[/]", f"{last.confidence:.2f}",
                      f"{right}/{len(mine)}")
    return table


def percentile_ms(values_s: list[float], q: float) -> float:
    """The ``q``-th percentile of ``values_s`` (seconds) in milliseconds; NaN when empty.

    Example:
        >>> percentile_ms([0.01, 0.02, 0.03], 50)
        20.0
    """
    return float(np.percentile(values_s, q) * 1000.0) if values_s else float("nan")


def summarise(fleet: Any, ledger: Ledger, metrics: Metrics) -> dict[str, Any]:
    """Accuracy against the simulator's truth, throughput, latency, per-stage daemon times."""
    from slewguard.service.metrics import histogram_totals
    from slewguard.service.status import counter_total

    sensors = {s.sensor_id: s for s in fleet.sensors}
    with ledger.lock:
        published, stored = dict(ledger.published_s), dict(ledger.stored)
    truth = {key: fleet.truth(sensors[key[0]], key[1]) for key in stored}
    hits = {key: r.predicted == truth[key] for key, (r, _) in stored.items()}
    ramp_done = fleet.spec.healthy_windows + RAMP_WINDOWS - 1
    full = [hit for (sid, k), hit in hits.items()
            if sensors[sid].fault == "healthy" or k >= ramp_done]
    recall = {c: float(np.mean(v)) for c in TRUTH_CLASSES
              if (v := [hit for key, hit in hits.items() if truth[key] == c])}
    latency_s = [max(0.0, created - published[key]) for key, (_, created) in stored.items()
                 if key in published]
    span_s = (max(c for _, c in stored.values()) - min(published.values())) if stored else 0.0
    stage_ms = {}
    for stage in ("decode", "features", "inference", "outbox", "end_to_end"):
        total, count = histogram_totals(metrics.stage_seconds, stage=stage)
        if count:
            stage_ms[stage] = round(1000.0 * total / count, 1)
    rejected = counter_total(metrics.windows_rejected_total)
    return {
        "published": len(published), "stored": len(stored), "rejected": int(rejected),
        "missing": sorted(f"{sid}#{k}" for sid, k in set(published) - set(stored)),
        "accuracy": float(np.mean(list(hits.values()))) if hits else float("nan"),
        "accuracy_full_severity": float(np.mean(full)) if full else float("nan"),
        "recall": recall,
        "throughput_windows_per_s": len(stored) / span_s if span_s > 0 else float("nan"),
        "latency_ms": {f"p{q}": round(percentile_ms(latency_s, q), 1) for q in (50, 90, 99)},
        "stage_mean_ms": stage_ms, "publisher_error": ledger.publisher_error}


def summary_table(summary: dict[str, Any], rate_hz: float) -> Table:
    """The end-of-run summary as a two-column rich table."""
    table = Table(title="summary", show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    s = summary
    ok = "green" if s["stored"] == s["published"] and not s["rejected"] else "red"
    table.add_row("windows", f"[{ok}]{s['stored']} of {s['published']} published windows "
                  f"diagnosed and stored in the outbox[/], {s['rejected']} rejected")
    table.add_row("accuracy", f"{s['accuracy']:.1%} against the simulator's truth "
                  f"({s['accuracy_full_severity']:.1%} once faults reach full severity)")
    table.add_row("per class", ", ".join(f"{c} {v:.0%}" for c, v in s["recall"].items()))
    offered = (f"each bearing sends {rate_hz:g} window/s" if rate_hz > 0
               else "bearings send as fast as they can")
    table.add_row("throughput", f"{s['throughput_windows_per_s']:.1f} windows/s ({offered})")
    lat = s["latency_ms"]
    table.add_row("latency", f"p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms, p99 "
                  f"{lat['p99']:.0f} ms (publish -> stored in the outbox)")
    stage = s["stage_mean_ms"]
    batch = ", ".join(f"{k} {stage[k]:.0f} ms" for k in ("features", "inference", "outbox")
                      if k in stage)
    table.add_row("daemon", f"{batch} per micro-batch; receipt -> ack "
                  f"{stage.get('end_to_end', float('nan')):.0f} ms per window (means)")
    table.add_row("prometheus", f"/metrics said {s['prometheus_windows_processed']:g} windows "
                  "processed (scraped before the daemon stopped)")
    if s["missing"]:
        table.add_row("[red]missing[/]", ", ".join(s["missing"][:10]))
    if s["publisher_error"]:
        table.add_row("[red]sensors[/]", s["publisher_error"])
    return table


def scrape_processed(url: str) -> float:
    """``slewguard_windows_processed_total`` read over HTTP from a /metrics URL (NaN if absent).

    Example:
        >>> scrape_processed("http://127.0.0.1:9108/metrics")   # doctest: +SKIP
        48.0
    """
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("slewguard_windows_processed_total "):
            return float(line.split()[1])
    return float("nan")
