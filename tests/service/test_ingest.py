"""Ingest against a real mosquitto: sessions, manual acks, in-flight bound, status, auth, TLS."""

import json
import logging
import re
import time

import pytest

from slewguard.service.config.mqtt import MqttConfig, TlsConfig
from slewguard.service.ingest import Inbound, Ingest, subscription_topics
from slewguard.service.metrics import Metrics
from slewguard.service.mqtt_client import publisher_client
from tests.service import services

TOPIC = "plant/yard/crane1/slew/s{}/vib"


def mqtt_config(port: int, protocol: str = "5", **overrides) -> MqttConfig:
    fields = dict(host="127.0.0.1", port=port, protocol=protocol, client_id=f"test-{protocol}",
                  keepalive_s=5, reconnect_min_s=1.0, reconnect_max_s=2.0, receive_maximum=32,
                  status_topic="slewguard/test/status")
    return MqttConfig(**{**fields, **overrides})


class Recorder:
    def __init__(self) -> None:
        self.messages = []

    def __call__(self, inbound) -> None:
        self.messages.append(inbound)

    def wait_for(self, count: int, timeout_s: float = 15.0) -> list:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} arrived"
        return self.messages


def started(config: MqttConfig, handler, metrics: Metrics | None = None) -> Ingest:
    ingest = Ingest(config, metrics or Metrics(), handler, {"version": "t", "model": "m"})
    ingest.start()
    assert ingest.subscribed.wait(15), "never connected and subscribed"
    return ingest


@pytest.mark.services
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_only_unacked_messages_come_back_after_reconnect(mosquitto, protocol):
    config = mqtt_config(mosquitto.port, protocol)
    first = Recorder()
    ingest = started(config, first)
    services.publish(mosquitto.port, [(TOPIC.format(i), f"w{i}".encode()) for i in range(4)])
    got = first.wait_for(4)
    for inbound in got[:3]:
        assert ingest.ack(inbound)
    ingest.stop()  # queued PUBACKs leave before the DISCONNECT (paho writes in order)
    services.publish(mosquitto.port, [(TOPIC.format(9), b"while-offline")])

    second = Recorder()
    again = started(config, second)
    try:
        messages = second.wait_for(2)
        time.sleep(0.5)
        assert sorted(m.payload for m in second.messages) == [b"w3", b"while-offline"]
        assert all(m.generation == 1 for m in messages)
    finally:
        again.stop()


@pytest.mark.services
def test_an_ack_from_an_old_connection_is_not_sent(mosquitto):
    ingest = started(mqtt_config(mosquitto.port), Recorder())
    try:
        stale = Inbound(TOPIC.format(1), b"", mid=1, qos=1, received_s=0.0, generation=0)
        assert not ingest.ack(stale)
    finally:
        ingest.stop()


@pytest.mark.services
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_broker_holds_back_messages_beyond_the_inflight_bound(mosquitto_factory, protocol):
    # v5: the client's Receive Maximum; v3.1.1: the broker's max_inflight_messages. Mosquitto
    # 2.0.11 holds the first window exactly but, once acks flow, was seen sending bursts of 10+;
    # the hard bound on memory is therefore the pipeline's blocking queue (test_pipeline).
    broker = mosquitto_factory(extra=["max_inflight_messages 4"] if protocol == "3.1.1" else [])
    recorder, metrics = Recorder(), Metrics()
    ingest = started(mqtt_config(broker.port, protocol, receive_maximum=4), recorder, metrics)
    try:
        services.publish(broker.port, [(TOPIC.format(1), b"%d" % i) for i in range(30)])
        recorder.wait_for(4)
        time.sleep(1.0)
        assert len(recorder.messages) == 4  # nothing more until we ack
        assert b"slewguard_mqtt_inflight_messages 4.0" in metrics.exposition()
        done = 0
        while done < 30:
            batch = recorder.wait_for(done + 1)[done:]
            for inbound in batch:
                ingest.ack(inbound)
            done += len(batch)
        assert sorted(int(m.payload) for m in recorder.messages) == list(range(30))
    finally:
        ingest.stop()


@pytest.mark.services
def test_status_topic_says_online_with_model_then_offline(mosquitto):
    watcher = services.Collector(mosquitto.port, ["slewguard/test/status"])
    try:
        ingest = started(mqtt_config(mosquitto.port), Recorder())
        online = json.loads(watcher.wait_for(1)[0][1])
        ingest.stop()
        offline = json.loads(watcher.wait_for(2)[1][1])
    finally:
        watcher.close()
    assert online == {"state": "online", "client_id": "test-5", "version": "t", "model": "m"}
    assert offline["state"] == "offline"


@pytest.mark.services
def test_shared_subscription_splits_messages_between_daemons(mosquitto):
    a, b = Recorder(), Recorder()
    first = started(mqtt_config(mosquitto.port, client_id="edge-a", shared_group="edge"), a)
    second = started(mqtt_config(mosquitto.port, client_id="edge-b", shared_group="edge"), b)
    try:
        services.publish(mosquitto.port, [(TOPIC.format(1), b"%d" % i) for i in range(20)])
        deadline = time.monotonic() + 15
        while len(a.messages) + len(b.messages) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        for ingest, rec in ((first, a), (second, b)):
            for inbound in rec.messages:
                ingest.ack(inbound)
        payloads = [m.payload for m in a.messages + b.messages]
        assert sorted(payloads) == sorted(b"%d" % i for i in range(20))  # each exactly once
        assert a.messages and b.messages
    finally:
        first.stop()
        second.stop()


def windows(recorder: Recorder) -> list[int]:
    return [int(m.payload) for m in recorder.messages if m.payload != b"probe"]


def connects(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("slewguard_mqtt_connects_total") or 0.0


@pytest.mark.services
@pytest.mark.parametrize("shared_group", [None, "edge"])
def test_subscribes_again_after_a_broker_restart(mosquitto_factory, caplog, shared_group):
    # The broker keeps the session (session present: True) but mosquitto 2.0 does not restore
    # its shared subscription (docs/reliability.md): only a SUBSCRIBE on every CONNACK, whatever
    # session_present says, brings the windows back.
    broker = mosquitto_factory(persistence=True)
    recorder, metrics = Recorder(), Metrics()
    config = mqtt_config(broker.port, client_id="edge-a", shared_group=shared_group)
    ingest = started(config, recorder, metrics)
    try:
        with caplog.at_level(logging.INFO, logger="slewguard.service.ingest"):
            broker.restart()
            services.wait_until(lambda: connects(metrics) >= 2, 30, "reconnected")
        assert "session present: True" in caplog.text
        said = [r.getMessage() for r in _ingest_records(caplog, logging.INFO)]
        gone = [i for i, m in enumerate(said) if m.startswith("disconnected from broker")]
        back = [i for i, m in enumerate(said) if m.startswith(
            f"connected to 127.0.0.1:{broker.port} as edge-a")]
        assert gone and back and gone[0] < back[-1], said  # the operator sees both, in order

        def probe_arrived() -> bool:  # the SUBACK may still be on its way
            services.publish(broker.port, [(TOPIC.format(0), b"probe")])
            return any(m.payload == b"probe" for m in recorder.messages)

        services.wait_until(probe_arrived, 10, "a window after the reconnect", poll_s=0.2)
        services.publish(broker.port, [(TOPIC.format(1), b"%d" % i) for i in range(10)])
        services.wait_until(lambda: len(windows(recorder)) >= 10, 15, "10 windows")
        assert sorted(windows(recorder)) == list(range(10))
    finally:
        ingest.stop()


def test_subscription_topics_prefix_the_shared_group():
    assert subscription_topics(["a/+/vib", "b/#"], None) == ["a/+/vib", "b/#"]
    assert subscription_topics(["a/+/vib"], "g") == ["$share/g/a/+/vib"]


@pytest.mark.services
def test_password_login_and_refusal(mosquitto_factory, tmp_path):
    passwd = services.password_file(tmp_path / "auth", "edge", "s3cret")
    broker = mosquitto_factory(extra=[f"password_file {passwd}", "allow_anonymous false"])
    good = started(mqtt_config(broker.port, username="edge", password="s3cret"), Recorder())
    good.stop()
    bad = Ingest(mqtt_config(broker.port, client_id="bad", username="edge", password="nope"),
                 Metrics(), Recorder())
    bad.start()
    try:
        assert not bad.connected.wait(2.0)
    finally:
        bad.stop()


@pytest.mark.services
def test_tls_with_a_private_ca(mosquitto_factory, tmp_path):
    certs = services.make_tls(tmp_path / "tls")
    broker = mosquitto_factory(extra=[f"cafile {certs['ca.crt']}",
                                      f"certfile {certs['server.crt']}",
                                      f"keyfile {certs['server.key']}"])
    tls = TlsConfig(ca_file=certs["ca.crt"])
    recorder = Recorder()
    ingest = started(mqtt_config(broker.port, tls=tls), recorder)
    try:
        # The broker's only listener speaks TLS: a plain publisher cannot reach it, so use ours.
        ingest.publish(TOPIC.format(1), b"over-tls").wait_for_publish(10)
        assert recorder.wait_for(1)[0].payload == b"over-tls"
    finally:
        ingest.stop()


@pytest.mark.services
def test_the_results_connection_logs_its_connects_and_disconnects(mosquitto_factory, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.ingest")
    broker = mosquitto_factory()
    client = publisher_client(mqtt_config(broker.port), "results-a")
    try:
        services.wait_until(client.is_connected, 20, "results connection up")
        broker.restart()

        def said() -> list[str]:
            return [r.getMessage() for r in _ingest_records(caplog, logging.INFO)]

        services.wait_until(lambda: sum(m.startswith("results connection: connected") for m in
                                        said()) >= 2, 30, "results connection back")
    finally:
        client.disconnect()
        client.loop_stop()
    where = f"127.0.0.1:{broker.port}"
    lines = [m for m in said() if m.startswith("results connection:")]
    assert lines[0] == f"results connection: connected to {where} as results-a " \
                       "(after 0 failed attempts)", lines
    assert any(m.startswith(f"results connection: disconnected from {where}") for m in lines)
    assert lines[-1].startswith(f"results connection: connected to {where}"), lines


def _ingest_records(caplog, level: int = logging.WARNING) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "slewguard.service.ingest" and r.levelno >= level]


def _failures(metrics: Metrics, reason: str) -> float:
    line = re.search(rb'slewguard_mqtt_connect_failures_total\{reason="%s"\} (\S+)'
                     % reason.encode(), metrics.exposition())
    return float(line.group(1)) if line else 0.0


def _failing(config: MqttConfig, attempts: int, every_s: float = 60.0) -> Ingest:
    """An Ingest that tried and failed ``attempts`` times (stopped again)."""
    ingest = Ingest(config, Metrics(), Recorder(), failure_log_every_s=every_s)
    ingest.start()
    try:
        services.wait_until(lambda: ingest.failures.attempts >= attempts, 30,
                            f"{attempts} failed connect attempts")
        assert not ingest.connected.is_set()
    finally:
        ingest.stop()
    return ingest


def _tls_broker(mosquitto_factory, certs: dict):
    return mosquitto_factory(extra=[f"cafile {certs['ca.crt']}", f"certfile {certs['server.crt']}",
                                    f"keyfile {certs['server.key']}"])


@pytest.mark.services
def test_a_ca_that_did_not_sign_the_broker_is_logged_once_with_host_port_and_ca_file(
        mosquitto_factory, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.ingest")
    broker = _tls_broker(mosquitto_factory, services.make_tls(tmp_path / "broker-tls"))
    wrong_ca = services.make_tls(tmp_path / "other-ca")["ca.crt"]
    config = mqtt_config(broker.port, tls=TlsConfig(ca_file=wrong_ca), reconnect_max_s=1.0)
    ingest = _failing(config, attempts=3)
    errors = [r.getMessage() for r in _ingest_records(caplog, logging.ERROR)]
    assert len(errors) == 1, errors  # three attempts, one cause: logged once
    assert "TLS handshake" in errors[0] and f"127.0.0.1:{broker.port}" in errors[0]
    assert f"mqtt.tls.ca_file={wrong_ca}" in errors[0]
    assert "not signed by that CA" in errors[0] and "retrying with backoff" in errors[0]
    assert _failures(ingest.metrics, "tls") == ingest.failures.attempts >= 3


@pytest.mark.services
def test_an_expired_broker_certificate_is_logged_as_expired(mosquitto_factory, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.ingest")
    certs = services.make_tls(tmp_path / "tls", server_days=-1)
    broker = _tls_broker(mosquitto_factory, certs)
    _failing(mqtt_config(broker.port, tls=TlsConfig(ca_file=certs["ca.crt"])), attempts=2)
    errors = [r.getMessage() for r in _ingest_records(caplog, logging.ERROR)]
    assert len(errors) == 1, errors
    assert "expired" in errors[0] and f"mqtt.tls.ca_file={certs['ca.crt']}" in errors[0]
    assert f"127.0.0.1:{broker.port}" in errors[0]


@pytest.mark.services
def test_a_broker_down_at_start_is_logged_at_once_then_periodically(mosquitto_factory, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.ingest")
    port = services.free_port()
    config = mqtt_config(port, reconnect_min_s=1.0, reconnect_max_s=1.0)
    ingest = Ingest(config, Metrics(), Recorder(), failure_log_every_s=1.0)
    ingest.start()
    try:
        services.wait_until(lambda: ingest.failures.attempts >= 1, 10, "a failed attempt")
        first = _ingest_records(caplog)
        assert len(first) == 1 and first[0].levelno == logging.WARNING
        assert f"127.0.0.1:{port}" in first[0].getMessage()
        assert "backoff from 1 s to 1 s" in first[0].getMessage()
        services.wait_until(lambda: ingest.failures.attempts >= 4, 20, "four failed attempts")
        reminders = [r.getMessage() for r in _ingest_records(caplog)[1:]]
        assert reminders and all("still not connected" in m for m in reminders), reminders
        assert _failures(ingest.metrics, "refused") >= 4
        mosquitto_factory(port=port)  # the broker comes up: the daemon connects and says so
        assert ingest.subscribed.wait(15)
        assert any("failed attempts" in r.getMessage() and r.levelno == logging.INFO
                   for r in caplog.records if r.name == "slewguard.service.ingest")
    finally:
        ingest.stop()
