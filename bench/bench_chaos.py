"""Chaos run: does every window reach the time-series database once, through kills and outages?

Real processes only: mosquitto with persistence (the deploy config's ``max_queued_messages``),
VictoriaMetrics speaking the InfluxDB v2 write API, and ``slewguard serve`` daemons with the
shipped fast model: one (``--daemons 1``), two splitting the load on ``$share/g/...`` (``2``),
or two with plain persistent subscriptions, one asset each (``2-split``). A QoS 1 publisher sends
``--windows`` windows (1 s at 5 kHz by default) from four sensors: ``acc1`` and ``acc2`` on
``crane-1`` and ``crane-2``, sampling in step, each with its own sequence numbers. It waits for
every PUBACK and republishes a window whose PUBACK does not come. During the stream:

- at 15 % of the windows: SIGKILL daemon 0, restart it 2 s later;
- at 35 %: restart the broker (SIGTERM, start on the same port and persistence file);
- at 50 %: stop the database for ``--db-outage-s`` seconds (SIGTERM, then start again);
- at 70 % (inside the outage): SIGKILL the last daemon, restart it 2 s later.

Then it waits until every window is in the database (or ``--settle-s`` pass without one more),
and counts per (site, asset, sensor, seq) in VictoriaMetrics' raw export (no dedup, so a point
written twice shows as two samples): lost (no point), duplicated (more than one distinct point:
two series or two timestamps, which InfluxDB would keep as two), extra (a key never published
or a point at another time than the window's start), and rewrites (the same point written
again after a redelivery: InfluxDB overwrites it, so these are not duplicates).

    .venv/bin/python bench/bench_chaos.py                       # one then two daemons, ~8 min
    .venv/bin/python bench/bench_chaos.py --daemons 2 --windows 400 --db-outage-s 30
    .venv/bin/python bench/bench_chaos.py --daemons 1 2 2-split --keep /tmp/chaos  # keep logs
Writes the table to bench/results/chaos.md (``--out``).
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
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slewguard.service.payload import Window, encode_binary, restamp  # noqa: E402
from tests.service import services  # noqa: E402
from tests.service.vm import start_victoria_metrics  # noqa: E402

SITE = "chaos"
MODES = {"1": "1", "2": "2, shared subscription $share/g/...",
         "2-split": "2, plain subscriptions, one asset each"}
SENSORS = [(asset, sensor) for sensor in ("acc1", "acc2") for asset in ("crane-1", "crane-2")]


@dataclass
class Daemon:
    """One ``slewguard serve`` process with its config, outbox and log under ``work``."""

    work: Path
    config: dict
    proc: subprocess.Popen | None = None
    http_port: int = 0
    starts: list[float] = field(default_factory=list)  # seconds from launch to /readyz 200
    lock: threading.Lock = field(default_factory=threading.Lock)  # one kill/restart at a time

    @classmethod
    def create(cls, work: Path, broker_port: int, index: int, *, shared: bool = False,
               influx_url: str | None = None, **sections: dict) -> Daemon:
        """Daemon ``index`` on the broker at ``broker_port``; ``sections`` override config keys."""
        work.mkdir(parents=True, exist_ok=True)
        http_port = services.free_port()
        mqtt_section = {"port": broker_port, "client_id": f"chaos{index}", "keepalive_s": 5,
                        "reconnect_min_s": 0.5, "reconnect_max_s": 2.0, "receive_maximum": 32}
        if shared:
            mqtt_section["shared_group"] = "g"
        config = {
            "site": SITE,
            "mqtt": mqtt_section,
            "sensors": [{"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205"}],
            "model": {"shipped": "fast"},
            "inference": {"max_batch": 16, "max_wait_ms": 50, "queue_size": 32,
                          "signal_threads": 1},
            "outbox": {"path": str(work / "outbox.sqlite3")},
            "http": {"port": http_port},
        }
        if influx_url:
            config["sinks"] = {"influx": {
                "type": "influx", "url": influx_url, "flush_interval_s": 0.5,
                "retry_min_s": 0.5, "retry_max_s": 5.0, "batch_size": 200, "timeout_s": 5.0}}
        for key, value in sections.items():
            config[key] = {**config.get(key, {}), **value}
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        return cls(work, config, http_port=http_port)

    @property
    def log(self) -> Path:
        return self.work / "serve.log"

    def start(self, timeout_s: float = 300.0) -> Daemon:
        """Launch and wait for /readyz (model loaded, broker connected, outbox writable)."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "slewguard.cli", "serve",
                                          "--config", str(self.work / "config.yaml")],
                                         stdout=log, stderr=log, cwd=ROOT)
        started = time.monotonic()
        while time.monotonic() < started + timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}; see {self.log}")
            if self.get("/readyz")[0] == 200:
                self.starts.append(time.monotonic() - started)
                return self
            time.sleep(0.2)
        raise TimeoutError(f"daemon not ready after {timeout_s} s; see {self.log}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                        timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, ""
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        """Sum of every sample of ``name`` on /metrics (0 when absent or unreachable)."""
        total = 0.0
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(120)

    def stop(self) -> int | None:
        """SIGTERM (drain, flush, exit); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


class AckedPublisher:
    """QoS 1 publisher that counts a window as sent only on its PUBACK (success reason code)."""

    def __init__(self, port: int, client_id: str = "chaos-pub") -> None:
        self.acked: set[int] = set()
        self.cond = threading.Condition()
        self.republished = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(32)
        self.client.reconnect_delay_set(0.2, 2.0)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if not reason_code.is_failure:
            with self.cond:
                self.acked.add(mid)
                self.cond.notify_all()

    def send(self, messages: list[tuple[str, bytes]], timeout_s: float = 60.0) -> None:
        """Publish ``messages`` and return once the broker acknowledged every one; a message
        without a PUBACK after ``timeout_s`` is published again (paho also resends the unacked
        ones itself after a reconnect)."""
        pending = {self.client.publish(t, p, qos=1).mid: (t, p) for t, p in messages}
        while pending:
            deadline = time.monotonic() + timeout_s
            with self.cond:
                while time.monotonic() < deadline and not all(m in self.acked for m in pending):
                    self.cond.wait(0.5)
                done = [m for m in pending if m in self.acked]
                self.acked.difference_update(done)
            for m in done:
                del pending[m]
            if pending:
                self.republished += len(pending)
                pending = {self.client.publish(t, p, qos=1).mid: (t, p)
                           for t, p in pending.values()}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def window_pool(sample_rate_hz: float, window_seconds: float) -> dict[str, list[bytes]]:
    """Two encoded windows per sensor id (healthy, outer race), re-stamped per window later."""
    from slewguard.signal.scenario import SimulationSpec
    from slewguard.signal.simulate import simulate

    pool = {}
    for i, sensor in enumerate(sorted({s for _, s in SENSORS})):
        pool[sensor] = []
        for fault in ("healthy", "outer_race"):
            spec = SimulationSpec(fault=fault, bearing="cwru-6205", rpm=1797.0,
                                  sample_rate_hz=sample_rate_hz, window_seconds=window_seconds,
                                  snr_db=0.0)
            x = simulate(spec, n_windows=1, seed=i).windows[0]
            pool[sensor].append(encode_binary(Window(sensor, 0, sample_rate_hz, 1797.0, 0, "g",
                                                     x)))
    return pool


def count(samples: list[tuple[dict, int, float]], expected: dict[tuple, int]) -> dict:
    """Lost / duplicated / extra / rewrites per (site, asset, sensor, seq).

    ``samples`` are (labels, timestamp_ms, seq value) of every stored sample; ``expected`` maps
    each published key to its window's start in ms.
    """
    points: dict[tuple, set] = defaultdict(set)
    writes: Counter = Counter()
    wrong_time = 0
    for labels, ts_ms, value in samples:
        key = (labels.get("site"), labels.get("asset"), labels.get("sensor"), int(value))
        series = tuple(sorted(labels.items()))
        points[key].add((series, ts_ms))
        writes[key] += 1
        if key in expected and ts_ms != expected[key]:
            wrong_time += 1
    lost = sum(1 for k in expected if k not in points)
    duplicated = sum(1 for k, p in points.items() if k in expected and len(p) > 1)
    extra = sum(1 for k in points if k not in expected) + wrong_time
    rewrites = sum(writes[k] - len(points[k]) for k in points)
    missing = sorted(k for k in expected if k not in points)
    return {"published": len(expected), "in_db": sum(1 for k in expected if k in points),
            "missing": missing, "lost": lost, "duplicated": duplicated, "extra": extra,
            "rewrites": rewrites, "samples": len(samples)}


def stored_samples(vm) -> list[tuple[dict, int, float]]:
    out = []
    for series in vm.export('{__name__="bearing_diagnosis_seq"}'):
        labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
        out.extend((labels, ts, v) for ts, v in zip(series["timestamps"], series["values"],
                                                     strict=True))
    return out


class Timeline:
    """Chaos events with their time from the start of the stream."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[str] = []
        self.lock = threading.Lock()

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:6.1f} s  {text}"
        with self.lock:
            self.events.append(line)
        print(line, flush=True)


def run(args: argparse.Namespace, mode: str, work: Path) -> dict:
    """One chaos run; ``mode`` is "1" (one daemon), "2" (two on a shared subscription) or
    "2-split" (two with plain persistent subscriptions, one asset each)."""
    broker = services.start_mosquitto(work / "mosquitto", persistence=True,
                                      extra=["max_queued_messages 100000"])
    vm = start_victoria_metrics(work / "vm")
    n_daemons = 1 if mode == "1" else 2
    assets = sorted({a for a, _ in SENSORS})
    daemons = [Daemon.create(work / f"d{i}", broker.port, i, shared=mode == "2",
                             influx_url=vm.url,
                             **({"mqtt": {"topics": [f"plant/+/{assets[i]}/+/+/vib"]}}
                                if mode == "2-split" else {}))
               for i in range(n_daemons)]
    per_sensor = -(-args.windows // len(SENSORS))
    pool = window_pool(args.sample_rate_hz, args.window_seconds)
    step_ns = int(args.window_seconds * 1e9)
    start_ns = (time.time_ns() - (per_sensor + 60) * step_ns) // 10**6 * 10**6  # in the past, ms
    expected: dict[tuple, int] = {}
    publisher = None
    threads: list[threading.Thread] = []
    try:
        for d in daemons:
            d.start()
        print(f"{n_daemons} daemon(s) ready in " + ", ".join(f"{d.starts[0]:.1f} s"
                                                             for d in daemons), flush=True)
        publisher = AckedPublisher(broker.port)
        timeline = Timeline()
        published = [0]
        total = per_sensor * len(SENSORS)

        def at(fraction: float) -> None:
            while published[0] < fraction * total:
                time.sleep(0.05)

        def kill(daemon: Daemon, index: int, fraction: float) -> None:
            at(fraction)
            with daemon.lock:
                daemon.kill()
                timeline.note(f"SIGKILL daemon {index} (pid {daemon.proc.pid})")
                time.sleep(2.0)
                daemon.start()
                timeline.note(f"daemon {index} restarted, ready after {daemon.starts[-1]:.1f} s")

        def broker_restart(fraction: float) -> None:
            at(fraction)
            timeline.note("broker restart: SIGTERM")
            broker.restart()
            timeline.note("broker listening again")

        def db_outage(fraction: float) -> None:
            at(fraction)
            vm.stop()
            timeline.note(f"database stopped for {args.db_outage_s:g} s")
            time.sleep(args.db_outage_s)
            vm.start()
            timeline.note("database started again")

        plan = [(kill, (daemons[0], 0, 0.15)), (broker_restart, (0.35,)),
                (db_outage, (0.50,)), (kill, (daemons[-1], n_daemons - 1, 0.70))]
        threads = [threading.Thread(target=f, args=a, daemon=True) for f, a in plan]
        for t in threads:
            t.start()
        period_s = len(SENSORS) / args.rate
        next_round = time.monotonic()
        for k in range(per_sensor):
            messages = []
            for asset, sensor in SENSORS:
                window_ns = start_ns + k * step_ns
                messages.append((f"plant/{SITE}/{asset}/slew/{sensor}/vib",
                                 restamp(pool[sensor][k % 2], window_ns, k)))
                expected[(SITE, asset, sensor, k)] = window_ns // 10**6
            publisher.send(messages)
            published[0] += len(messages)
            next_round += period_s
            time.sleep(max(0.0, next_round - time.monotonic()))
        timeline.note(f"all {len(expected)} windows acknowledged by the broker "
                      f"({publisher.republished} republished)")
        for t in threads:
            t.join()
        result = settle(vm, expected, args.settle_s, timeline)
        exit_codes = [d.stop() for d in daemons]
        timeline.note(f"SIGTERM: daemon exit codes {exit_codes}")
        result.update(daemons=MODES[mode], republished=publisher.republished,
                      exit_codes=exit_codes, events=timeline.events)
        return result
    finally:
        if publisher is not None:
            publisher.close()
        for d in daemons:
            d.kill()
        broker.stop()
        vm.stop()


def settle(vm, expected: dict, settle_s: float, timeline: Timeline) -> dict:
    """Poll the database until every key is there or ``settle_s`` pass without progress."""
    last, last_change = -1, time.monotonic()
    while True:
        result = count(stored_samples(vm), expected)
        if result["in_db"] != last:
            last, last_change = result["in_db"], time.monotonic()
        if result["in_db"] == len(expected):
            time.sleep(3.0)  # a late rewrite or duplicate still counts
            result = count(stored_samples(vm), expected)
            break
        if time.monotonic() - last_change > settle_s:
            break
        time.sleep(2.0)
    timeline.note(f"database holds {result['in_db']} of {len(expected)} windows")
    if result["missing"]:
        shown = ", ".join(f"{a}/{s}#{q}" for _, a, s, q in result["missing"][:20])
        timeline.note(f"missing: {shown}{' ...' if len(result['missing']) > 20 else ''}")
    return result


def table(rows: list[dict]) -> str:
    lines = ["| daemons | windows published (PUBACKed) | republished | in database | lost | "
             "duplicated | extra | rewrites of the same point | daemon exit codes at SIGTERM |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['daemons']} | {r['published']} | {r['republished']} | "
                     f"{r['in_db']} | **{r['lost']}** | **{r['duplicated']}** | **{r['extra']}**"
                     f" | {r['rewrites']} | {', '.join(map(str, r['exit_codes']))} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--daemons", nargs="+", choices=tuple(MODES), default=["1", "2"],
                        help="runs to make: 1 daemon, 2 on a shared subscription, 2-split: two "
                        "with plain subscriptions that split the topics by asset")
    parser.add_argument("--windows", type=int, default=2400, help="windows in all (4 sensors)")
    parser.add_argument("--rate", type=float, default=16.0, help="windows per second published")
    parser.add_argument("--sample-rate-hz", type=float, default=5000.0)
    parser.add_argument("--window-seconds", type=float, default=1.0)
    parser.add_argument("--db-outage-s", type=float, default=35.0)
    parser.add_argument("--settle-s", type=float, default=120.0,
                        help="give up waiting this long after the last new window in the database")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos.md")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep logs, outboxes and data under this directory")
    args = parser.parse_args()
    rows = []
    for mode in args.daemons:
        print(f"\n== daemons: {MODES[mode]} ==", flush=True)
        if args.keep is not None:
            rows.append(run(args, mode, args.keep / f"daemons{mode}"))
            continue
        with tempfile.TemporaryDirectory(prefix="chaos") as tmp:
            rows.append(run(args, mode, Path(tmp)))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    command = "bench/bench_chaos.py " + " ".join(sys.argv[1:])
    text = [f"# Chaos run\n\n`.venv/bin/python {command.strip()}` on commit {commit}, "
            f"{os.cpu_count()} cores (shared), {args.windows} windows of "
            f"{args.window_seconds:g} s at {args.sample_rate_hz:g} Hz from 4 sensors at "
            f"{args.rate:g} windows/s, shipped fast model, mosquitto with persistence, "
            f"VictoriaMetrics (InfluxDB v2 write API, no dedup). Events: SIGKILL a daemon at 15 % "
            f"and at 70 % of the stream (restart 2 s later), broker restart at 35 %, database "
            f"stopped for {args.db_outage_s:g} s from 50 %.\n", table(rows)]
    for r in rows:
        text.append(f"\nDaemons: {r['daemons']}; timeline (s from the first window):\n\n```\n"
                    + "\n".join(r["events"]) + "\n```")
    out = "\n".join(text) + "\n"
    print("\n" + table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
