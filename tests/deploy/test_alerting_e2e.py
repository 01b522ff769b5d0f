"""Alerting end to end: simulator -> mosquitto -> daemon -> Prometheus rules -> Alertmanager ->
webhook, and the daemon's own webhook, with real processes on free ports.

The stack (``shared_stack``) is started once per test session and shared with
test_dashboards_live.py. The deployed rules and Alertmanager routing are used as written, except
the ``for:`` durations (1 s) and group_wait/group_interval (1 s), rewritten in tmp.

The fault is injected as diagnosed Results written into the running daemon's outbox: the tiny
test classifier is random (untrained), so no simulated window makes it say "outer_race" with
confidence on purpose. From the outbox on, everything is the production path: the forwarder
feeds the AlertSink, which votes, sets the gauges Prometheus scrapes and queues its own webhook.
The features of the injected results come from real simulated outer-race windows.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.service import services
from tests.service.services import wait_until
from tests.service.test_webhook import Receiver

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
FAST = dict(bearing="cwru-6205", rpm=1797.0, sample_rate_hz=12000.0, window_seconds=0.25)
FAULTY = ("yard1", "crane9", "slew", "s9")  # the bearing whose fault is injected


def missing() -> str | None:
    """Why the stack cannot run here, or None."""
    try:
        importlib.import_module("slewguard.signal.textify")
    except ImportError:
        return "slewguard.signal.textify is not in the tree yet: the daemon cannot textify"
    for name, path in (("mosquitto", services.MOSQUITTO), ("prometheus", services.PROMETHEUS),
                       ("prometheus-alertmanager", ALERTMANAGER)):
        if path is None:
            return f"{name} is not installed (apt: mosquitto prometheus prometheus-alertmanager)"
    return None


def fast_rules(directory: Path) -> Path:
    """deploy's rules with every ``for:`` shortened to 1 s."""
    rules = yaml.safe_load((DEPLOY / "prometheus/rules/slewguard.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def start_alertmanager(directory: Path, webhook_url: str) -> tuple[subprocess.Popen, int]:
    """deploy's Alertmanager routing and inhibition, 1 s grouping, webhooks to ``webhook_url``."""
    config = yaml.safe_load((DEPLOY / "alertmanager/alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = services.free_port()
    with (directory / "alertmanager.log").open("ab") as log:
        proc = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}",
             "--cluster.listen-address=", f"--storage.path={directory / 'am-data'}"],
            stdout=log, stderr=log)
    services.wait_port(port, proc=proc, timeout_s=30)
    return proc, port


def start_prometheus(directory: Path, target: str, alertmanager_port: int
                     ) -> services.Prometheus:
    """Prometheus scraping ``target`` every second with the fast rules and Alertmanager."""
    config = directory / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(fast_rules(directory))],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [{"job_name": "slewguard", "static_configs": [{"targets": [target]}]}],
    }))
    port = services.free_port()
    with (directory / "prometheus.log").open("ab") as log:
        proc = subprocess.Popen(
            [services.PROMETHEUS, f"--config.file={config}",
             f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s",
             f"--storage.tsdb.path={directory / 'prom-data'}"], stdout=log, stderr=log)
    services.wait_port(port, proc=proc, timeout_s=30)
    return services.Prometheus(directory, port, proc)


def daemon_config(directory: Path, broker_port: int, hook_url: str):
    from slewguard.service.config import config_from_dict

    return config_from_dict({
        "site": "yard1",
        "mqtt": {"port": broker_port, "client_id": "e2e", "keepalive_s": 5,
                 "dead_letter_topic": "slewguard/dead", "status_topic": "slewguard/status"},
        "sensors": [{"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205"}],
        "inference": {"max_batch": 8, "max_wait_ms": 20, "queue_size": 16},
        "outbox": {"path": str(directory / "outbox.sqlite3")},
        "http": {"port": 0},
        "alerts": {"k": 2, "n": 3, "dashboard_url": "http://grafana.test:3000",
                   "webhooks": [{"name": "tickets", "url": hook_url, "format": "alertmanager",
                                 "retry_min_s": 0.1, "retry_max_s": 1.0}]},
    }, env={})


class Stack:
    """mosquitto, the daemon (in-process App), Prometheus, Alertmanager and two receivers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stoppers: list = []
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        from slewguard.service.app import App
        from tests.service.conftest import tiny_classifier

        directory = self.directory
        self.broker = services.start_mosquitto(directory / "mosquitto")
        self.stoppers.append(self.broker.stop)
        self.am_receiver = Receiver().up()  # Alertmanager's webhook
        self.hook_receiver = Receiver().up()  # the daemon's own webhook
        self.stoppers += [self.am_receiver.down, self.hook_receiver.down]
        am_proc, self.am_port = start_alertmanager(directory, self.am_receiver.url)
        self.stoppers.append(lambda: services._stop(am_proc))
        self.app = App(daemon_config(directory, self.broker.port, self.hook_receiver.url),
                       classifier=tiny_classifier()).start()
        self.stoppers.append(self.app.stop)
        assert self.app.ingest.subscribed.wait(15), "daemon never subscribed"
        self.prometheus = start_prometheus(directory, f"127.0.0.1:{self.app.http_port}",
                                           self.am_port)
        self.stoppers.append(self.prometheus.stop)
        self._feed()

    def _feed(self) -> None:
        """A few simulated windows from three sensors and one dead letter, through mosquitto."""
        from slewguard.service.publisher import Fleet, FleetSpec, Publisher, connect

        client = connect("127.0.0.1", self.broker.port)
        try:
            Publisher(Fleet(FleetSpec(sensors=3, **FAST)), client).run(3)
            client.publish("plant/yard1/crane1/slew/s1/vib", b"garbage", qos=1).wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()
        wait_until(lambda: b"slewguard_windows_processed_total 9.0" in
                   self.app.metrics.exposition(), 30, "9 windows diagnosed")

    def inject(self, predicted: str, count: int, first: int,
               where: tuple[str, str, str, str] = FAULTY) -> None:
        """Put ``count`` diagnosed windows of bearing ``where`` into the daemon's outbox."""
        from slewguard.service.result import Result
        from slewguard.signal import features, kinematics
        from slewguard.signal.scenario import SimulationSpec
        from slewguard.signal.simulate import simulate

        sim = simulate(SimulationSpec(fault=predicted, severity=2.0, snr_db=10.0, **FAST),
                       n_windows=count, seed=first)
        table = features.extract(sim.windows, FAST["sample_rate_hz"],
                                 kinematics.preset(FAST["bearing"]), rpm=sim.rpm)
        site, asset, bearing, sensor = where
        now = time.time_ns()
        self.app.outbox.put([
            Result(site, asset, bearing, sensor, "tiny-bert", predicted, 0.95,
                   {"healthy": 0.05, predicted: 0.95} if predicted != "healthy" else
                   {"healthy": 0.95}, table.row(i), FAST["rpm"], first + i,
                   now + i * 1000, f"plant/{site}/{asset}/{bearing}/{sensor}/vib")
            for i in range(count)])

    def close(self) -> None:
        while self.stoppers:
            try:
                self.stoppers.pop()()
            except Exception as exc:  # keep stopping the rest
                print(f"stopping failed: {exc!r}")


_STACK: dict[str, Stack] = {}


def shared_stack(request: pytest.FixtureRequest) -> Stack:
    """The one Stack of this session, started on first use (module fixtures call this)."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    if "stack" not in _STACK:
        directory = request.getfixturevalue("tmp_path_factory").mktemp("e2e")
        _STACK["stack"] = Stack(directory)
        request.config.add_cleanup(_STACK["stack"].close)  # after an interrupted run
    return _STACK["stack"]


def release_stack(request: pytest.FixtureRequest) -> None:
    """Stop the stack at a module's end unless a later test in this session still uses it."""
    items = request.session.items
    mine = [i for i, item in enumerate(items)
            if getattr(item, "module", None) is request.module]  # doctest items have none
    later = items[max(mine) + 1:] if mine else []
    if "stack" in _STACK and not any("stack" in getattr(item, "fixturenames", ())
                                     for item in later):
        _STACK.pop("stack").close()


@pytest.fixture(scope="module")
def stack(request) -> Iterator[Stack]:
    yield shared_stack(request)
    release_stack(request)


def firing_alerts(receiver: Receiver, status: str) -> list[dict]:
    return [a for body in receiver.accepted if body.get("status") == status
            for a in body.get("alerts", [])
            if a["labels"].get("alertname") == "SlewguardBearingFault"
            and a["labels"].get("asset") == FAULTY[1] and a["labels"]["state"] == "outer_race"]


@pytest.mark.services
def test_injected_fault_fires_then_resolves_through_alertmanager(stack):
    stack.inject("outer_race", 3, first=0)
    fired = wait_until(lambda: firing_alerts(stack.am_receiver, "firing"), 40,
                       "Alertmanager firing webhook")
    stack.inject("healthy", 3, first=3)
    resolved = wait_until(lambda: firing_alerts(stack.am_receiver, "resolved"), 40,
                          "Alertmanager resolved webhook")
    labels = fired[0]["labels"]
    assert (labels["site"], labels["asset"], labels["bearing"], labels["state"]) == (
        "yard1", "crane9", "slew", "outer_race")
    assert "var-bearing=slew" in fired[0]["annotations"]["dashboard"]
    assert resolved[0]["fingerprint"] == fired[0]["fingerprint"]
    # The daemon's own hook: one firing, escalations on the same key, one resolved.
    def own_hooks() -> list[dict]:
        return [b for b in stack.hook_receiver.accepted if b["commonLabels"]["asset"] == "crane9"]

    own = wait_until(lambda: any(b["status"] == "resolved" for b in own_hooks()) and own_hooks(),
                     20, "daemon resolved webhook")
    kinds = [b["alerts"][0]["annotations"]["event"] for b in own]
    assert kinds[0] == "firing" and kinds[-1] == "resolved", kinds
    assert set(kinds[1:-1]) <= {"escalated"}, kinds
    assert len({b["groupKey"] for b in own}) == 1


@pytest.mark.services
def test_every_bearing_state_reaches_prometheus(stack):
    result = stack.prometheus.wait_for('slewguard_bearing_state_code{asset="crane1"}')
    assert float(result[0]["value"][1]) in {0.0, 1.0, 3.0, 4.0, 5.0, 6.0, 7.0}
    states = stack.prometheus.wait_for('sum by (bearing, asset) (slewguard_bearing_state)')
    assert {float(s["value"][1]) for s in states} == {1.0}  # exactly one state is 1 per bearing
