"""The whole daemon against real services: mosquitto, Prometheus, VictoriaMetrics, serve."""

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from slewguard.service.app import App
from slewguard.service.config import config_from_dict
from slewguard.service.publisher import Fleet, FleetSpec
from slewguard.service.sinks.webhook import WebhookQueue
from tests.service import services
from tests.service.conftest import ThreadsSeen
from tests.service.services import http_get as get
from tests.service.services import wait_until
from tests.service.test_webhook import Receiver
from tests.service.vm import (
    VICTORIA_METRICS,
    start_victoria_metrics,
    victoria_metrics,  # noqa: F401 - pytest fixture
)

FAST = dict(bearing="cwru-6205", rpm=1797.0, sample_rate_hz=12000.0, window_seconds=0.25)
DIAG = "plant/+/+/+/+/diag"


def config_data(tmp_path, broker_port: int, protocol: str = "5", **sections) -> dict:
    data = {
        "site": "yard1",
        "mqtt": {"port": broker_port, "protocol": protocol, "client_id": f"app-{protocol}",
                 "keepalive_s": 5, "reconnect_min_s": 1.0, "reconnect_max_s": 2.0,
                 "dead_letter_topic": "slewguard/dead", "status_topic": "slewguard/status"},
        "sensors": [{"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205"}],
        "inference": {"max_batch": 8, "max_wait_ms": 20, "queue_size": 16},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
        "http": {"port": 0},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


def start_app(tmp_path, broker_port, classifier, protocol="5", **sections) -> App:
    config = config_from_dict(config_data(tmp_path, broker_port, protocol, **sections), env={})
    app = App(config, classifier=classifier).start()
    assert app.ingest.subscribed.wait(15), "daemon never subscribed"
    return app


def outbox_rows(path) -> list[dict]:
    with sqlite3.connect(path) as db:
        return [json.loads(body) for (body,) in db.execute("SELECT body FROM outbox")]


def fleet_messages(sensors: int, count: int, **spec) -> list[tuple[str, bytes]]:
    return list(Fleet(FleetSpec(sensors=sensors, **{**FAST, **spec})).messages(count))


@pytest.mark.services
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_windows_in_results_out(mosquitto, tmp_path, classifier, protocol):
    results = services.Collector(mosquitto.port, [DIAG])
    app = start_app(tmp_path, mosquitto.port, classifier, protocol)
    try:
        services.publish(mosquitto.port, fleet_messages(3, 4))
        got = results.wait_for(12, topic_prefix="plant/yard1")
        wait_until(lambda: app.outbox.depth() == 0, what="outbox forwarded")
    finally:
        app.stop()
        results.close()
    diags = [json.loads(p) for t, p, _ in got if t.endswith("/diag")]
    assert sorted((d["sensor"], d["seq"]) for d in diags) == sorted(
        (f"s{i}", k) for i in (1, 2, 3) for k in range(4))
    assert {d["model"] for d in diags} == {"tiny-bert"}
    text = app.metrics.exposition().decode()
    assert "slewguard_windows_processed_total 12.0" in text
    assert 'slewguard_sink_writes_total{outcome="ok",sink="mqtt"}' in text
    assert 'slewguard_sink_writes_total{outcome="ok",sink="alerts"}' in text  # voting wired in
    assert 'slewguard_bearing_state{asset="crane2"' in text


@pytest.mark.services
def test_malformed_payload_is_dead_lettered_once(mosquitto, tmp_path, classifier):
    dead = services.Collector(mosquitto.port, ["slewguard/dead"])
    app = start_app(tmp_path, mosquitto.port, classifier)
    try:
        services.publish(mosquitto.port, [("plant/yard1/crane1/slew/s1/vib", b"garbage")])
        topic, payload, properties = dead.wait_for(1)[0]
        wait_until(lambda: b'dead_letters_total{reason="bad_magic"} 1.0'
                   in app.metrics.exposition(), what="dead letter counted")
    finally:
        app.stop()
    envelope = json.loads(payload)
    assert envelope["reason"] == "bad_magic" and envelope["topic"].endswith("/s1/vib")
    assert ("reason", "bad_magic") in properties.UserProperty
    # Acked: a restarted daemon with the same persistent session does not see it again.
    again = start_app(tmp_path, mosquitto.port, classifier)
    try:
        time.sleep(2.0)
        assert len(dead.messages) == 1
    finally:
        again.stop()
        dead.close()


def _variant(window, seq: int, n: int | None = None):
    """``window`` with a new seq and start time (a distinct key), optionally ``n`` samples."""
    from slewguard.service.payload import Window

    samples = window.samples if n is None else np.resize(window.samples, n)
    return Window(window.sensor_id, window.start_ns + seq * 10**10, window.sample_rate_hz,
                  window.rpm, seq, window.unit, samples)


@pytest.mark.services
def test_oversize_messages_are_dead_lettered_before_decoding(mosquitto, tmp_path, classifier):
    from slewguard.service.payload import decode, encode_binary, encode_json

    topic, payload = fleet_messages(1, 1)[0]
    window = decode(payload)
    at_limit = encode_json(_variant(window, 1))  # passes: exactly the limit
    under = encode_binary(_variant(window, 2), "int16")
    limit = len(at_limit)
    over_json = encode_json(_variant(window, 3)).replace(b"{", b"{ ", 1)
    over_binary = encode_binary(_variant(window, 4, n=limit // 4), "float32")
    assert len(over_json) == limit + 1 and len(over_binary) > limit
    dead = services.Collector(mosquitto.port, ["slewguard/dead"])
    results = services.Collector(mosquitto.port, [DIAG], client_id="results")
    app = start_app(tmp_path, mosquitto.port, classifier, ingest={"max_payload_bytes": limit})
    try:
        services.publish(mosquitto.port, [(topic, m) for m in (at_limit, over_json, under,
                                                                over_binary)])
        letters = [json.loads(p) for _, p, _ in dead.wait_for(2)]
        diags = [json.loads(p) for t, p, _ in results.wait_for(2) if t.endswith("/diag")]
        wait_until(lambda: b'dead_letters_total{reason="too_large"} 2.0'
                   in app.metrics.exposition(), what="oversize messages counted")
        metrics = app.metrics.exposition().decode()
    finally:
        app.stop()
        dead.close()
        results.close()
    assert sorted(d["seq"] for d in diags) == [1, 2]
    assert {e["reason"] for e in letters} == {"too_large"}
    assert sorted(e["payload_bytes"] for e in letters) == sorted([len(over_json),
                                                                  len(over_binary)])
    for e in letters:
        assert f"{e['payload_bytes']}-byte message exceeds the {limit}-byte limit" in e["detail"]
        assert "ingest.max_payload_bytes" in e["detail"]
        assert e["payload_truncated"] and len(e["payload_b64"]) <= 4 * 4096 / 3 + 4
    # Rejected before decoding: only the two windows that passed reached the decode stage.
    assert 'slewguard_stage_duration_seconds_count{stage="decode"} 2.0' in metrics
    assert 'slewguard_windows_rejected_total{reason="too_large"} 2.0' in metrics


@pytest.mark.services
def test_readyz_follows_the_broker_and_reconnect_resubscribes(mosquitto, tmp_path, classifier):
    app = start_app(tmp_path, mosquitto.port, classifier)
    ready = f"http://127.0.0.1:{app.http_port}/readyz"
    try:
        assert get(ready)[0] == 200
        mosquitto.stop()  # no persistence: the new broker knows no session or subscription
        status, body = wait_until(lambda: (r := get(ready))[0] == 503 and r, what="503")
        assert "broker" in json.loads(body)["reasons"]
        assert get(f"http://127.0.0.1:{app.http_port}/healthz")[0] == 200
        mosquitto.start()
        wait_until(lambda: get(ready)[0] == 200 and app.ingest.subscribed.is_set(),
                   what="ready again after reconnect")
        services.publish(mosquitto.port, fleet_messages(1, 2))
        wait_until(lambda: b"processed_total 2.0" in app.metrics.exposition(),
                   what="windows after the reconnect (on_connect subscribed again)")
    finally:
        app.stop()


@pytest.mark.services
def test_prometheus_scrapes_the_daemon(mosquitto, tmp_path, classifier, prometheus_factory):
    app = start_app(tmp_path, mosquitto.port, classifier)
    try:
        services.publish(mosquitto.port, fleet_messages(2, 3))
        wait_until(lambda: app.outbox.depth() == 0 and b"processed_total 6.0"
                   in app.metrics.exposition(), what="6 windows processed")
        status, body = get(f"http://127.0.0.1:{app.http_port}/metrics")
        lint = subprocess.run([services.PROMTOOL, "check", "metrics"], input=body,
                              capture_output=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
        prom = prometheus_factory([f"127.0.0.1:{app.http_port}"])
        result = prom.wait_for("slewguard_windows_processed_total")
        assert float(result[0]["value"][1]) == 6.0
        info = prom.wait_for('slewguard_build_info{model="tiny-bert"}')
        assert info[0]["metric"]["job"] == "slewguard"
    finally:
        app.stop()


@pytest.mark.services
def test_victoria_metrics_outage_loses_and_duplicates_nothing(mosquitto, tmp_path, classifier,
                                                              victoria_metrics):  # noqa: F811
    influx = {"url": victoria_metrics.url, "flush_interval_s": 0.2, "retry_min_s": 0.2,
              "retry_max_s": 1.0, "batch_size": 50}
    app = start_app(tmp_path, mosquitto.port, classifier,
                        sinks={"influx": {"type": "influx", **influx}})
    fleet = Fleet(FleetSpec(sensors=2, **FAST))  # start_ns now: inside VM's retention
    messages = list(fleet.messages(6))
    try:
        services.publish(mosquitto.port, messages[:6])
        wait_until(lambda: b"processed_total 6.0" in app.metrics.exposition()
                   and app.outbox.depth() == 0, what="first half forwarded")
        victoria_metrics.stop()  # nothing in flight: the outage starts between writes
        services.publish(mosquitto.port, messages[6:])
        wait_until(lambda: b'sink="influx"' in app.metrics.exposition()
                   and b'outcome="retry"' in app.metrics.exposition(), what="retries")
        assert app.outbox.depth() > 0  # held back, not dropped
        victoria_metrics.start()
        wait_until(lambda: app.outbox.depth() == 0, what="outbox drained after the outage")
    finally:
        app.stop()
    seqs = {dict(labels)["sensor"]: [int(v) for _, v in points]
            for labels, points in victoria_metrics.points("bearing_diagnosis_seq").items()}
    assert seqs == {"s1": list(range(6)), "s2": list(range(6))}  # each point exactly once


@pytest.mark.services
def test_two_sinks_of_one_type_each_get_every_result_under_their_own_name(
        mosquitto, tmp_path, classifier, victoria_metrics):  # noqa: F811
    """Two ``sinks`` entries of type influx (a local store and an archive, here one database
    with two measurements): every window reaches both, and each sink counts under its name."""
    fast = {"type": "influx", "url": victoria_metrics.url, "flush_interval_s": 0.2,
            "retry_min_s": 0.2, "retry_max_s": 1.0}
    app = start_app(tmp_path, mosquitto.port, classifier, sinks={
        "local": {**fast, "measurement": "local_diag"},
        "archive": {**fast, "measurement": "archive_diag"}})
    # two minutes ago: inside VM's retention, and past its 1 s query latency offset
    messages = fleet_messages(2, 4, start_ns=time.time_ns() - 120 * 10**9)
    try:
        assert [s.name for s in app._forwarder.sinks] == ["alerts", "mqtt", "local", "archive"]
        services.publish(mosquitto.port, messages)
        wait_until(lambda: b"processed_total 8.0" in app.metrics.exposition()
                   and app.outbox.depth() == 0, what="8 windows forwarded")
        text = app.metrics.exposition().decode()
    finally:
        app.stop()
    for name in ("local", "archive"):
        assert f'slewguard_sink_writes_total{{outcome="ok",sink="{name}"}}' in text
        seqs = {dict(labels)["sensor"]: [int(v) for _, v in points] for labels, points in
                victoria_metrics.points(f"{name}_diag_seq").items()}
        assert seqs == {"s1": list(range(4)), "s2": list(range(4))}, name


@pytest.mark.services
def test_a_webhook_outage_that_spans_a_reload_is_one_outage(mosquitto, tmp_path, classifier,
                                                            caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.webhook")
    receiver = Receiver()  # down
    hook = {"name": "tickets", "url": receiver.url, "retry_min_s": 0.05, "retry_max_s": 0.2}
    app = start_app(tmp_path, mosquitto.port, classifier, alerts={"webhooks": [hook]})
    queue = WebhookQueue(tmp_path / "outbox-alerts.sqlite3")  # the daemon's alert queue

    def said(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "slewguard.service.sinks.webhook" and r.levelno == level]

    try:
        queue.commit({"tickets": [{"event": "firing"}, {"event": "resolved"}]}, {})
        wait_until(lambda: said(logging.WARNING), what="outage logged")
        app.reload(app.config)  # what SIGHUP does
        time.sleep(1.5)  # failed attempts after the reload
        receiver.up()
        receiver.wait_for(2)
        wait_until(lambda: said(logging.INFO), what="recovery logged")
    finally:
        app.stop()
        receiver.down()
        queue.close()
    assert [m.split(",")[0] for m in said(logging.WARNING)] == [
        "webhook tickets is down (queued events: 2)"]
    (recovered,) = said(logging.INFO)
    assert recovered.endswith("events delivered: 2, still queued: 0"), recovered


@pytest.mark.services
@pytest.mark.skipif(VICTORIA_METRICS is None, reason="victoria-metrics not installed")
def test_one_sensor_name_on_two_assets_keeps_every_window(mosquitto, tmp_path, classifier):
    # Issue 17.1: acc1 on crane-1 and on crane-2, sampling in step, overwrote each other in
    # the outbox (100 processed, 50 rows, 55 points). VictoriaMetrics with dedup reads back like
    # InfluxDB: one point per series and timestamp.
    vm = start_victoria_metrics(tmp_path / "vm", dedup=True)
    influx = {"url": vm.url, "flush_interval_s": 0.2, "retry_min_s": 0.2, "retry_max_s": 1.0,
              "batch_size": 50}
    payloads = [p for _, p in fleet_messages(1, 50, start_ns=time.time_ns() - 120 * 10**9)]
    topics = {asset: f"plant/s1/{asset}/slew/acc1/vib" for asset in ("crane-1", "crane-2")}
    messages = [(topic, p) for p in payloads for topic in topics.values()]  # same start times
    try:
        app = start_app(tmp_path, mosquitto.port, classifier,
                        sinks={"influx": {"type": "influx", **influx}})
        try:
            services.publish(mosquitto.port, messages)
            wait_until(lambda: b"processed_total 100.0" in app.metrics.exposition()
                       and app.outbox.depth() == 0, what="100 windows forwarded")
            services.publish(mosquitto.port, messages[:1])  # crane-1's first window again
            wait_until(lambda: b"processed_total 101.0" in app.metrics.exposition()
                       and app.outbox.depth() == 0, what="the redelivered window forwarded")
        finally:
            app.stop()
        points = vm.points("bearing_diagnosis_seq")
    finally:
        vm.stop()
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
        rows = [(row_id, state, json.loads(body)) for row_id, state, body
                in db.execute("SELECT id, state, body FROM outbox")]
    assert sorted((r["asset"], r["seq"]) for _, _, r in rows) == sorted(
        (asset, k) for asset in topics for k in range(50))  # one row per window, none twice
    first = [(i, state) for i, state, r in rows if (r["asset"], r["seq"]) == ("crane-1", 0)]
    assert len(first) == 1 and first[0][0] > 100 and first[0][1] == 1  # replaced, sent again
    per_asset: dict[str, list[tuple[int, int]]] = {}
    for labels, samples in points.items():
        tags = dict(labels)
        assert (tags["site"], tags["sensor"], tags["bearing"]) == ("s1", "acc1", "slew")
        per_asset.setdefault(tags["asset"], []).extend((t, int(v)) for t, v in samples)
    assert sorted(per_asset) == sorted(topics)
    for asset, samples in per_asset.items():
        assert sorted(v for _, v in samples) == list(range(50)), asset  # one point per window
    assert sorted(t for t, _ in per_asset["crane-1"]) == sorted(t for t, _ in per_asset["crane-2"])


def serve(config_path, log_path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "slewguard.cli", "serve", "--config",
                                 str(config_path)], stdout=log, stderr=log)


def write_serve_config(tmp_path, broker_port, saved_model) -> tuple:
    http_port = services.free_port()
    data = config_data(tmp_path, broker_port, model={"path": str(saved_model)},
                       http={"port": http_port}, inference={"max_batch": 4, "queue_size": 8})
    path = tmp_path / "slewguard.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, http_port


def wait_ready(proc, http_port, log_path, timeout_s=120.0) -> None:
    def ready():
        assert proc.poll() is None, log_path.read_text()
        return get(f"http://127.0.0.1:{http_port}/readyz")[0] == 200 if _listening(
            http_port) else False

    wait_until(ready, timeout_s, "daemon ready")


def _listening(port: int) -> bool:
    try:
        services.wait_port(port, timeout_s=0.1)
        return True
    except TimeoutError:
        return False


@pytest.mark.services
@pytest.mark.slow
def test_sigkill_and_broker_restart_lose_no_window(mosquitto_factory, tmp_path, saved_model):
    broker = mosquitto_factory(persistence=True)
    status = services.Collector(broker.port, ["slewguard/status"], client_id="status-watch")
    config_path, http_port = write_serve_config(tmp_path, broker.port, saved_model)
    log_path = tmp_path / "serve.log"
    proc = serve(config_path, log_path)
    messages = fleet_messages(3, 20)
    try:
        wait_ready(proc, http_port, log_path)
        services.publish(broker.port, messages[:30])
        outbox = tmp_path / "outbox.sqlite3"
        wait_until(lambda: len(outbox_rows(outbox)) >= 5, what="daemon mid-run")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        offline = wait_until(lambda: [p for _, p, _ in status.messages if b"offline" in p],
                             what="last will")
        assert json.loads(offline[-1])["state"] == "offline"
        services.publish(broker.port, messages[30:])  # queued for the offline session
        broker.restart()  # the queued windows survive on disk (persistence)
        proc = serve(config_path, log_path)
        wait_until(lambda: len(outbox_rows(outbox)) >= len(messages), 120, "all windows")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(60) == 0
        status.close()
    keys = sorted((r["sensor"], r["seq"]) for r in outbox_rows(outbox))
    assert keys == sorted((f"s{i}", k) for i in (1, 2, 3) for k in range(20))


@pytest.mark.services
@pytest.mark.slow
def test_sigterm_drains_and_sighup_keeps_the_session(mosquitto, tmp_path, saved_model):
    config_path, http_port = write_serve_config(tmp_path, mosquitto.port, saved_model)
    log_path = tmp_path / "serve.log"
    results = services.Collector(mosquitto.port, [DIAG])
    proc = serve(config_path, log_path)
    try:
        wait_ready(proc, http_port, log_path)
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(lambda: b"reloaded sinks" in log_path.read_bytes(), what="reload logged")
        services.publish(mosquitto.port, fleet_messages(2, 4))
        results.wait_for(8)
        metrics = get(f"http://127.0.0.1:{http_port}/metrics")[1]
        assert b"slewguard_mqtt_connects_total 1.0" in metrics  # SIGHUP did not reconnect
        services.publish(mosquitto.port, fleet_messages(2, 6)[4:])
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        results.close()
    rows = outbox_rows(tmp_path / "outbox.sqlite3")
    with sqlite3.connect(tmp_path / "outbox.sqlite3") as db:
        pending = db.execute("SELECT COUNT(*) FROM outbox WHERE state = 0").fetchone()[0]
    assert pending == 0  # flushed to the MQTT sink before exit
    assert len(rows) >= 8


def test_check_config_reports_key_paths(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(config_data(tmp_path, 1883)))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**config_data(tmp_path, 1883),
                                   "inference": {"max_batch": 0, "colour": "red"}}))
    run = [sys.executable, "-m", "slewguard.cli", "check-config"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok: site yard1" in ok.stdout
    out = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "inference.max_batch" in out.stderr and "inference.colour" in out.stderr


@pytest.fixture
def amqtt_broker():
    """amqtt in-process (the demo's fallback broker; MQTT 3.1.1 only) on a free port."""
    amqtt_broker = pytest.importorskip("amqtt.broker", reason="amqtt not installed (extra: demo)")
    import asyncio
    import threading

    port, loop = services.free_port(), asyncio.new_event_loop()
    broker = amqtt_broker.Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                    {"allow_anonymous": True}}}, loop=loop)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(15)
    yield port
    asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(15)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_app_and_publisher_in_process_on_amqtt(amqtt_broker, tmp_path, classifier):
    from slewguard.service.publisher import Publisher, connect

    app = start_app(tmp_path, amqtt_broker, classifier, protocol="3.1.1")
    client = connect("127.0.0.1", amqtt_broker, protocol="3.1.1")
    try:
        assert Publisher(Fleet(FleetSpec(sensors=2, **FAST)), client).run(3) == 6
        wait_until(lambda: b"processed_total 6.0" in app.metrics.exposition(), what="6 windows")
    finally:
        client.loop_stop()
        client.disconnect()
        app.stop()


def test_json_log_records_are_one_object_per_line():
    import logging

    from slewguard.service.cli import JsonFormatter

    record = logging.LogRecord("slewguard.service.app", logging.WARNING, __file__, 1,
                               "outbox holds %d results", (3,), None)
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "WARNING" and doc["message"] == "outbox holds 3 results"
    assert doc["logger"] == "slewguard.service.app"


@pytest.mark.services
def test_model_torch_threads_reaches_the_inference_thread(mosquitto, tmp_path, classifier):
    import torch

    before = torch.get_num_threads()
    model = ThreadsSeen(classifier)
    results = services.Collector(mosquitto.port, [DIAG])
    app = start_app(tmp_path, mosquitto.port, model, model={"torch_threads": 1})
    try:
        # Torch's process-wide count changes after start (another library, a second model):
        # the inference thread keeps the count it was configured with.
        torch.set_num_threads(2)
        services.publish(mosquitto.port, fleet_messages(1, 2))
        results.wait_for(2, topic_prefix="plant/yard1")
    finally:
        app.stop()
        results.close()
        torch.set_num_threads(before)
    assert app.pipeline.torch_threads == 1
    assert model.seen and set(model.seen) == {("pipeline-inference", 1)}


def test_readiness_names_the_pipeline_thread_that_is_not_running(tmp_path):
    app = App(config_from_dict(config_data(tmp_path, 1883), env={}))
    check = app._checks()["pipeline"]
    assert check() == "pipeline not started"
    app.pipeline = SimpleNamespace(stopped_threads=lambda: ["pipeline-inference"])
    assert check() == "pipeline-inference thread not running"
    app.pipeline = SimpleNamespace(stopped_threads=lambda: ["pipeline-features",
                                                            "pipeline-inference"])
    assert check() == "pipeline-features and pipeline-inference threads not running"
    app.pipeline = SimpleNamespace(stopped_threads=lambda: [])
    assert check() is None
