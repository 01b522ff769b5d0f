"""The forwarder against real services: VictoriaMetrics outage, permanent 400s, MQTT results."""

from __future__ import annotations

import logging
import random
import re
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from slewguard.service.metrics import Metrics
from slewguard.service.outbox import Outbox
from slewguard.service.result import Result
from slewguard.service.sinks import RetryableSinkError
from slewguard.service.sinks.forwarder import Backoff, Forwarder
from slewguard.service.sinks.health import OUTAGE_REMIND_S
from slewguard.service.sinks.mqtt import MqttResultSink
from tests.service.services import Collector
from tests.service.test_influx_sink import results, sink_for
from tests.service.vm import (
    StatusServer,
    victoria_metrics,  # noqa: F401 - pytest fixture
)


def stamps(vm, metric: str = "bearing_diagnosis_confidence") -> list[int]:
    """Every stored sample's timestamp (ms), duplicates included."""
    return sorted(t for pts in vm.points(metric).values() for t, _ in pts)


def ms(batch: list[Result]) -> list[int]:
    return sorted(r.start_ns // 10**6 for r in batch)


def drain(fwd: Forwarder, max_steps: int = 50) -> None:
    for _ in range(max_steps):
        if fwd.outbox.depth() == 0:
            return
        fwd.step()
    raise AssertionError(f"outbox still holds {fwd.outbox.depth()} results")


def lines(caplog, level: int) -> list[str]:
    """The forwarder's log messages at exactly ``level``."""
    return [r.getMessage() for r in caplog.records
            if r.name == "slewguard.service.sinks.forwarder" and r.levelno == level]


def test_run_drains_the_outbox_exactly_once(victoria_metrics, tmp_path):  # noqa: F811
    box = Outbox(tmp_path / "o.db")
    metrics = Metrics()
    fwd = Forwarder(box, [sink_for(victoria_metrics.url)], metrics=metrics, batch_size=7,
                    idle_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=fwd.run, args=(stop,))
    thread.start()
    try:
        batch = results(30)
        for i in range(0, 30, 10):
            box.put(batch[i:i + 10])
        deadline = time.monotonic() + 20
        while box.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert box.depth() == 0
    assert stamps(victoria_metrics) == ms(batch)
    ok = metrics.registry.get_sample_value("slewguard_sink_writes_total",
                                           {"sink": "influx", "outcome": "ok"})
    assert ok >= 30 / 7
    assert metrics.registry.get_sample_value("slewguard_outbox_depth") == 0


def test_outage_piles_up_then_all_arrive_exactly_once(victoria_metrics, tmp_path):  # noqa: F811
    box = Outbox(tmp_path / "o.db")
    metrics = Metrics()
    fwd = Forwarder(box, [sink_for(victoria_metrics.url)], metrics=metrics, batch_size=8,
                    backoff=Backoff(min_s=0.5, max_s=4.0, jitter=0.0))
    before = results(10)
    box.put(before)
    drain(fwd)
    victoria_metrics.stop()
    during = results(25, first=10)
    for r in during:  # the pipeline keeps diagnosing while the database is down
        box.put([r])
    delays = [fwd.step() for _ in range(5)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]  # exponential, capped
    assert box.depth() == 25 and box.oldest_age_s() is not None
    assert metrics.registry.get_sample_value(
        "slewguard_sink_writes_total", {"sink": "influx", "outcome": "retry"}) == 5
    victoria_metrics.start()  # same port, same data directory
    drain(fwd)
    assert fwd.backoff.attempt == 0  # success resets the backoff
    assert stamps(victoria_metrics) == ms(before + during)  # all there, none twice
    assert box.set_aside_rows() == []


def test_a_database_outage_logs_one_warning_then_the_recovery(victoria_metrics, tmp_path,  # noqa: F811
                                                              caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.forwarder")
    box = Outbox(tmp_path / "o.db")
    url = victoria_metrics.url.replace("http://", "http://admin:hunter2@")  # a password in it
    fwd = Forwarder(box, [sink_for(url)], backoff=Backoff(min_s=0.1, max_s=0.2, jitter=0.0))
    before, during = results(3), results(5, first=3)
    box.put(before)
    drain(fwd)
    assert caplog.records == []  # healthy: nothing to say
    victoria_metrics.stop()
    box.put(during)
    assert all(fwd.step() > 0 for _ in range(6))  # six failed writes
    down = lines(caplog, logging.WARNING)
    assert len(down) == 1, down
    assert down[0].startswith("sink influx is down, 5 results wait in the outbox (retrying "
                              f"with backoff): connection: http://***@127.0.0.1:"
                              f"{victoria_metrics.port}: ")
    assert down[0].endswith("Connection refused")
    assert lines(caplog, logging.INFO) == []
    victoria_metrics.start()
    drain(fwd)
    up = lines(caplog, logging.INFO)
    assert len(up) == 1 and re.fullmatch(r"sink influx recovered after \d+ s \(failed writes: "
                                         r"6\); 5 results delivered, 0 more wait in the outbox",
                                         up[0]), up
    assert len(lines(caplog, logging.WARNING)) == 1  # nothing more while down or after
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in caplog.records)
    assert "hunter2" not in caplog.text
    assert stamps(victoria_metrics) == ms(before + during)


class Scripted:
    """A sink that raises the next of ``errors`` on each write (None: stores the batch)."""

    name = "tsdb"

    def __init__(self, errors: list[Exception | None]) -> None:
        self.errors, self.stored = list(errors), []

    def write(self, batch):
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        self.stored.extend(batch)


def test_a_long_outage_is_reminded_every_few_minutes_without_secrets(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.forwarder")
    refused = RetryableSinkError("connection", "http://admin:hunter2@db:8086/api/v2/write"
                                 "?org=o&token=s3cr3t (Connection refused)")
    unauthorized = RetryableSinkError("http_401", "InfluxDB answered 401: unauthorized")
    sink = Scripted([refused] * 6 + [unauthorized] * 2 + [None, refused, None])
    now = [0.0]
    box = Outbox(tmp_path / "o.db")
    box.put(results(4))
    fwd = Forwarder(box, [sink], clock=lambda: now[0], backoff=Backoff(jitter=0.0))
    step = 70.0
    assert OUTAGE_REMIND_S == 300.0  # the timeline below: failures at 0, 70, ..., 490 s
    for _ in range(9):
        fwd.step()
        now[0] += step
    assert box.depth() == 0 and len(sink.stored) == 4
    where = "http://***@db:8086/api/v2/write?org=o&token=*** (Connection refused)"
    assert lines(caplog, logging.WARNING) == [
        f"sink tsdb is down, 4 results wait in the outbox (retrying with backoff): "
        f"connection: {where}",
        f"sink tsdb still down after 350 s (failed writes: 6), 4 results wait in the outbox; "
        f"last error: connection: {where}",
        "sink tsdb still down after 420 s, new error: http_401: InfluxDB answered 401: "
        "unauthorized"]
    assert lines(caplog, logging.INFO) == [
        "sink tsdb recovered after 560 s (failed writes: 8); 4 results delivered, 0 more wait "
        "in the outbox"]
    box.put(results(2, first=10))  # a second, short outage is logged afresh
    fwd.step()
    now[0] += 5.0
    fwd.step()
    assert lines(caplog, logging.WARNING)[3:] == [
        f"sink tsdb is down, 2 results wait in the outbox (retrying with backoff): "
        f"connection: {where}"]
    assert lines(caplog, logging.INFO)[1:] == [
        "sink tsdb recovered after 5 s (failed writes: 1); 2 results delivered, 0 more wait "
        "in the outbox"]
    assert "hunter2" not in caplog.text and "s3cr3t" not in caplog.text


def test_a_new_forwarder_takes_over_the_outage_of_the_one_it_replaces(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.forwarder")
    refused = RetryableSinkError("connection", "refused")
    now = [0.0]
    box = Outbox(tmp_path / "o.db")
    box.put(results(3))
    old = Forwarder(box, [Scripted([refused] * 2)], clock=lambda: now[0],
                    backoff=Backoff(jitter=0.0))
    for _ in range(2):
        old.step()
        now[0] += 10.0
    new = Forwarder(box, [Scripted([refused])], clock=lambda: now[0],  # a reload's sink
                    backoff=Backoff(jitter=0.0))
    new.take_over(old)
    new.step()  # still down: no second warning
    now[0] += 10.0
    new.step()
    assert box.depth() == 0 and len(new.sinks[0].stored) == 3
    assert lines(caplog, logging.WARNING) == [
        "sink tsdb is down, 3 results wait in the outbox (retrying with backoff): connection: "
        "refused"]
    assert lines(caplog, logging.INFO) == [
        "sink tsdb recovered after 30 s (failed writes: 3); 3 results delivered, 0 more wait "
        "in the outbox"]


def test_the_recovery_waits_for_the_backlog_and_counts_it(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.forwarder")
    box = Outbox(tmp_path / "o.db")
    box.put(results(5))
    fwd = Forwarder(box, [Scripted([RetryableSinkError("connection", "refused")])],
                    batch_size=2, backoff=Backoff(jitter=0.0))
    fwd.step()
    drain(fwd)  # 2 + 2 + 1 results after the outage
    assert lines(caplog, logging.INFO) == [
        "sink tsdb recovered after 0 s (failed writes: 1); 5 results delivered, 0 more wait "
        "in the outbox"]


def test_permanent_errors_are_isolated_and_set_aside(tmp_path):
    server = StatusServer(lambda body: (400, "unable to parse") if "sensor=bad" in body
                          else (204, ""))
    box = Outbox(tmp_path / "o.db")
    metrics = Metrics()
    fwd = Forwarder(box, [sink_for(server.url)], metrics=metrics, batch_size=16)
    try:
        good, bad = results(14), results(2, sensor="bad", first=100)
        box.put(good[:5] + bad[:1] + good[5:11] + bad[1:] + good[11:])
        assert fwd.step() == 0.0
    finally:
        server.close()
    assert box.depth() == 0
    aside = box.set_aside_rows()
    assert [(reason, r.sensor, r.seq) for _, reason, r in aside] == [
        ("http_400", "bad", 100), ("http_400", "bad", 101)]
    accepted = [b for b in server.bodies if "sensor=bad" not in b]
    written = sorted(line.split()[-1] for b in accepted for line in b.splitlines())
    assert written == sorted(str(r.start_ns) for r in good)  # every good one exactly once
    assert metrics.registry.get_sample_value("slewguard_outbox_set_aside_total",
                                             {"reason": "http_400"}) == 2


class Flaky:
    """A sink whose first ``failures`` writes raise; counts what it finally stored."""

    name = "flaky"

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.stored = failures, error, []

    def write(self, batch):
        if self.failures:
            self.failures -= 1
            raise self.error
        self.stored.extend(batch)


def test_run_uses_injected_sleep_and_survives_a_buggy_sink(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.forwarder")
    box = Outbox(tmp_path / "o.db")
    box.put(results(3))
    sink = Flaky(2, KeyError("bug"))
    stop, waits = threading.Event(), []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if box.depth() == 0:
            stop.set()

    metrics = Metrics()
    Forwarder(box, [sink], metrics=metrics, backoff=Backoff(min_s=1, max_s=10, jitter=0),
              sleep=sleep, idle_s=0.25).run(stop)
    assert waits == [1.0, 2.0, 0.25]
    assert [r.seq for r in sink.stored] == [0, 1, 2]
    assert metrics.registry.get_sample_value(
        "slewguard_sink_writes_total", {"sink": "flaky", "outcome": "error"}) == 2
    assert lines(caplog, logging.WARNING) == [
        "sink flaky is down, 3 results wait in the outbox (retrying with backoff): "
        "KeyError: 'bug'"]
    bugs = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(bugs) == 1 and bugs[0].exc_info is not None  # the traceback once, not per try
    assert bugs[0].getMessage() == "sink flaky raised KeyError on a batch of 3 results"
    assert [m.split(";")[0] for m in lines(caplog, logging.INFO)] == [
        "sink flaky recovered after 0 s (failed writes: 2)"]


def test_a_retryable_second_sink_keeps_the_batch_pending(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put(results(4))
    first, second = Flaky(0, None), Flaky(1, RetryableSinkError("http_503", "busy"))
    fwd = Forwarder(box, [first, second], backoff=Backoff(jitter=0))
    assert fwd.step() == 0.5 and box.depth() == 4
    assert fwd.step() == 0.0 and box.depth() == 0
    assert len(first.stored) == 8 and len(second.stored) == 4  # idempotent rewrite of sink 1


def test_backoff_jitter_stays_within_bounds():
    b = Backoff(min_s=1, max_s=30, jitter=0.5, rng=random.Random(3))
    for k in range(12):
        base = min(30, 2**k)
        assert base * 0.5 <= b.next_delay() <= base
    with pytest.raises(ValueError, match="min_s=0"):
        Backoff(min_s=0)


def connect(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="daemon",
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    return client


def test_mqtt_sink_publishes_diag_and_retained_state(mosquitto, tmp_path):
    live = Collector(mosquitto.port, ["plant/#"], client_id="live")
    client = connect(mosquitto.port)
    box = Outbox(tmp_path / "o.db")
    batch = results(3) + results(1, sensor="s2", first=50)
    box.put(batch)
    try:
        drain(Forwarder(box, [MqttResultSink(client, prefix="plant")]))
        got = live.wait_for(8)
        diag = [Result.from_json(p) for t, p, _ in got if t.endswith("/diag")]
        assert sorted((r.sensor, r.seq) for r in diag) == sorted((r.sensor, r.seq) for r in batch)
        assert {t for t, _, _ in got} == {
            "plant/yard1/crane1/slew/s1/diag", "plant/yard1/crane1/slew/s1/diag/state",
            "plant/yard1/crane1/slew/s2/diag", "plant/yard1/crane1/slew/s2/diag/state"}
        late = Collector(mosquitto.port, ["plant/+/+/+/+/diag/state"], client_id="late")
        retained = {t: Result.from_json(p).seq for t, p, _ in late.wait_for(2)}
        assert retained == {"plant/yard1/crane1/slew/s1/diag/state": 2,
                            "plant/yard1/crane1/slew/s2/diag/state": 50}
        late.close()
        client.loop_stop()
        client.disconnect()
        with pytest.raises(RetryableSinkError, match="disconnected"):
            MqttResultSink(client, prefix="plant").write(batch[:1])
    finally:
        live.close()


def test_an_idle_forwarder_wakes_when_results_are_stored(tmp_path):
    box = Outbox(tmp_path / "o.db")
    sink, stop = Flaky(0, None), threading.Event()
    fwd = Forwarder(box, [sink], idle_s=60.0)  # without the wake-up a result would wait 60 s
    thread = threading.Thread(target=fwd.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(0.3)  # the forwarder has found the outbox empty and is waiting
        box.put(results(2))
        deadline = time.monotonic() + 20
        while len(sink.stored) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r.seq for r in sink.stored] == [0, 1] and box.depth() == 0
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()  # stop is honoured during the idle wait too
