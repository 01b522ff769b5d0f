"""The pipeline with a real outbox and a real tiny model; backpressure with a real mosquitto."""

import json
import threading
import time
from dataclasses import fields

import numpy as np
import pytest

from slewguard.service.config import config_from_dict
from slewguard.service.config.model import InferenceConfig
from slewguard.service.config.mqtt import MqttConfig
from slewguard.service.deadletter import dead_letter_envelope
from slewguard.service.ingest import Inbound, Ingest
from slewguard.service.metrics import Metrics
from slewguard.service.outbox import Outbox
from slewguard.service.payload import Window, encode_binary
from slewguard.service.pipeline import Pipeline, PipelineSettings
from slewguard.service.placement import SensorMap
from slewguard.service.publisher import Fleet, FleetSpec
from tests.service import services
from tests.service.conftest import ThreadsSeen

START_NS = 1_700_000_000_000_000_000
FAST = dict(bearing="cwru-6205", rpm=1797.0, sample_rate_hz=12000.0, window_seconds=0.25,
            start_ns=START_NS)
CONFIG = config_from_dict({"site": "yard1", "sensors": [
    {"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205"}]}, env={})


def inbound(topic: str, payload: bytes, mid: int = 1) -> Inbound:
    return Inbound(topic, payload, mid, 1, time.monotonic(), 1)


def fleet_messages(n_sensors: int, count: int) -> list[Inbound]:
    fleet = Fleet(FleetSpec(sensors=n_sensors, **FAST))
    return [inbound(t, p, i + 1) for i, (t, p) in enumerate(fleet.messages(count))]


class Recorder:
    """Records acks and dead letters in order, with the outbox depth at each ack."""

    def __init__(self, outbox=None) -> None:
        self.events: list[tuple] = []
        self.outbox = outbox

    def ack(self, message: Inbound) -> bool:
        depth = self.outbox.depth() if self.outbox is not None else None
        self.events.append(("ack", message.mid, depth))
        return True

    def dead_letter(self, message: Inbound, reason: str, detail: str) -> None:
        self.events.append(("dead", message.mid, reason))

    @property
    def acked(self) -> list[int]:
        return [mid for kind, mid, _ in self.events if kind == "ack"]


def make(tmp_path, classifier, settings=None, outbox=None, metrics=None):
    outbox = outbox or Outbox(tmp_path / "outbox.sqlite3")
    rec = Recorder(outbox)
    metrics = metrics or Metrics()
    pipe = Pipeline(settings or PipelineSettings(), classifier, outbox,
                    SensorMap(CONFIG).resolve, metrics, rec.ack, rec.dead_letter)
    return pipe, outbox, rec, metrics


def test_a_batch_becomes_results_in_the_outbox_before_any_ack(tmp_path, classifier):
    pipe, outbox, rec, metrics = make(tmp_path, classifier)
    messages = fleet_messages(3, 2)
    results = pipe.process(messages)
    assert outbox.depth() == 6
    # Each ack happened with all six results already committed.
    assert rec.events == [("ack", m.mid, 6) for m in messages]
    r = next(r for r in results if r.sensor == "s2" and r.seq == 1)
    assert (r.site, r.asset, r.bearing, r.topic) == ("yard1", "crane2", "slew",
                                                     "plant/yard1/crane2/slew/s2/vib")
    assert r.start_ns == START_NS + 250_000_000 and r.rpm == 1797.0
    assert r.predicted in classifier.classes and r.model == "tiny-bert"
    assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert r.confidence == max(r.probabilities.values())
    assert {"rms", "kurtosis", "env_bpfi_h1_db"} <= set(r.features)
    assert b"slewguard_windows_processed_total 6.0" in metrics.exposition()


def test_batched_inference_equals_one_window_at_a_time(tmp_path, classifier):
    messages = fleet_messages(2, 2)
    together = make(tmp_path / "a", classifier)[0].process(messages)
    alone = [make(tmp_path / f"b{i}", classifier)[0].process([m])[0]
             for i, m in enumerate(messages)]
    for a, b in zip(together, alone, strict=True):
        assert a.predicted == b.predicted
        assert a.confidence == pytest.approx(b.confidence, abs=1e-5)


def test_features_are_computed_by_the_band_search_the_model_card_names(tmp_path):
    from slewguard.service.payload import decode
    from slewguard.signal.features import extract
    from slewguard.signal.kinematics import preset
    from tests.service.conftest import tiny_classifier

    message = fleet_messages(1, 1)[0]
    window = decode(message.payload)
    for method in ("tree", "stft"):
        clf = tiny_classifier()
        clf.card["features"] = method
        got = make(tmp_path / method, clf)[0].process([message])[0].features
        want = extract(window.samples, window.sample_rate_hz, preset("cwru-6205"),
                       rpm=window.rpm, method=method).row(0)
        assert got["band_width_rel"] == pytest.approx(want["band_width_rel"])
        assert got["env_bpfo_h1_db"] == pytest.approx(want["env_bpfo_h1_db"], abs=1e-3)
    assert make(tmp_path / "none", tiny_classifier())[0].features_method == "tree"


def test_poison_messages_are_dead_lettered_acked_and_counted(tmp_path, classifier):
    pipe, outbox, rec, metrics = make(tmp_path, classifier)
    good = fleet_messages(1, 2)
    w = Window("s9", START_NS, 12000.0, 10.0, 0, "g",  # 10 rpm: far too slow for 0.25 s
               np.random.default_rng(0).normal(size=3000).astype(np.float32))
    corrupt = bytearray(good[0].payload)
    corrupt[-10] ^= 0xFF
    bad = [inbound("plant/yard1/crane9/slew/s9/vib", b"not a window", 101),
           inbound("plant/yard1/crane9/slew/s9/vib", bytes(corrupt), 102),
           inbound("plant/yard1/crane9/slew/s9/vib", encode_binary(w), 103),
           inbound("elsewhere/s9", good[1].payload, 104)]
    pipe.process(good + bad)
    assert outbox.depth() == 2
    dead = {mid: reason for kind, mid, reason in rec.events if kind == "dead"}
    assert dead == {101: "bad_magic", 102: "checksum", 103: "features", 104: "unknown_sensor"}
    assert sorted(rec.acked) == [1, 2, 101, 102, 103, 104]  # poison is acked: no redelivery loop
    text = metrics.exposition().decode()
    assert 'slewguard_windows_rejected_total{reason="checksum"} 1.0' in text
    assert 'slewguard_windows_rejected_total{reason="features"} 1.0' in text


def test_dead_letter_envelope_carries_the_original_bytes():
    body = json.loads(dead_letter_envelope(inbound("a/b", b"\x00\xffraw"), "checksum", "crc"))
    assert body["reason"] == "checksum" and body["topic"] == "a/b"
    import base64

    assert base64.b64decode(body["payload_b64"]) == b"\x00\xffraw"


class FlakyOutbox:
    """A real outbox whose first ``failures`` puts raise, like a locked or full disk."""

    def __init__(self, outbox: Outbox, failures: int) -> None:
        self.outbox, self.failures, self.calls = outbox, failures, 0

    def put(self, results) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("disk I/O error")
        self.outbox.put(results)

    def depth(self) -> int:
        return self.outbox.depth()


def test_outbox_failures_delay_the_ack_until_the_results_are_stored(tmp_path, classifier):
    flaky = FlakyOutbox(Outbox(tmp_path / "o.sqlite3"), failures=2)
    pipe, _, rec, _ = make(tmp_path, classifier, outbox=flaky)
    messages = fleet_messages(2, 1)
    pipe.process(messages)
    assert flaky.calls == 3
    assert rec.events == [("ack", m.mid, 2) for m in messages]


class BrokenModel:
    classes = ["healthy", "inner_race"]

    def predict_proba(self, texts):
        raise RuntimeError("CUDA out of memory")


def test_a_model_failure_leaves_messages_unacked(tmp_path):
    pipe, outbox, rec, metrics = make(tmp_path, BrokenModel())
    assert pipe.process(fleet_messages(1, 2)) == []
    assert rec.events == [] and outbox.depth() == 0
    assert b'slewguard_windows_rejected_total{reason="inference_error"} 2.0' in metrics.exposition()


def test_worker_takes_micro_batches_and_drains_on_stop(tmp_path, classifier):
    settings = PipelineSettings(max_batch=4, max_wait_ms=200, queue_size=16)
    pipe, outbox, rec, metrics = make(tmp_path, classifier, settings)
    messages = fleet_messages(2, 5)
    for m in messages:
        assert pipe.submit(m)
    pipe.start()
    pipe.stop(drain=True)
    assert sorted(rec.acked) == sorted(m.mid for m in messages)
    assert outbox.depth() == 10
    assert pipe.batches >= 3  # 10 windows, at most 4 per batch
    assert not pipe.submit(messages[0])  # closed: refused, stays unacked on the broker


class SlowModel:
    """The real tiny model, made slow: each batch takes ``delay_s`` longer."""

    def __init__(self, model, delay_s: float) -> None:
        self.model, self.delay_s, self.classes = model, delay_s, model.classes

    def predict_proba(self, texts):
        time.sleep(self.delay_s)
        return self.model.predict_proba(texts)


@pytest.mark.services
def test_backpressure_bounds_in_flight_messages(mosquitto, tmp_path, classifier):
    settings = PipelineSettings(max_batch=2, max_wait_ms=10, queue_size=2)
    metrics = Metrics()
    outbox = Outbox(tmp_path / "o.sqlite3")
    holder = {}
    config = MqttConfig(port=mosquitto.port, client_id="bp", receive_maximum=1000,
                        reconnect_min_s=1.0, reconnect_max_s=2.0)
    ingest = Ingest(config, metrics, lambda m: holder["pipe"].submit(m))
    pipe = Pipeline(settings, SlowModel(classifier, 0.05), outbox, SensorMap(CONFIG).resolve,
                    metrics, ingest.ack, lambda *a: None)
    holder["pipe"] = pipe
    pipe.start()
    ingest.start()
    assert ingest.subscribed.wait(10)
    fleet = Fleet(FleetSpec(sensors=4, **FAST))
    try:
        done = threading.Thread(target=services.publish,
                                args=(mosquitto.port, list(fleet.messages(10))))
        done.start()
        deadline = time.monotonic() + 120
        while outbox.depth() < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
        done.join()
    finally:
        pipe.stop()
        ingest.stop()
    assert outbox.depth() == 40
    # The broker allowed 1000 in flight; the blocking queue held it to the queue, one batch in
    # each worker thread and one between them, and the message waiting inside paho's callback.
    bound = settings.queue_size + 3 * settings.max_batch + 1
    assert 1 <= ingest.max_inflight_seen <= bound


def test_sensor_config_flags_wrong_rate_and_rejects_missing_rpm(tmp_path, classifier):
    config = config_from_dict({"site": "yard1", "sensors": [
        {"topic_filter": "plant/+/+/+/fixed/vib", "bearing": "cwru-6205", "rpm_source": "fixed",
         "rpm": 1797.0},
        {"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205", "sample_rate_hz": 12000}]},
        env={})
    rec = Recorder()
    metrics = Metrics()
    pipe = Pipeline(PipelineSettings(), classifier, Outbox(tmp_path / "o.sqlite3"),
                    SensorMap(config).resolve, metrics, rec.ack, rec.dead_letter)
    x = np.random.default_rng(1).normal(size=3000).astype(np.float32)
    no_rpm = encode_binary(Window("s1", START_NS, 12000.0, None, 0, "g", x))
    wrong_rate = encode_binary(Window("s2", START_NS, 24000.0, 1797.0, 0, "g", np.tile(x, 2)))
    results = pipe.process([inbound("plant/y/a/b/s1/vib", no_rpm, 1),
                            inbound("plant/y/a/b/s2/vib", wrong_rate, 2),
                            inbound("plant/y/a/b/fixed/vib", no_rpm, 3)])
    dead = {mid: reason for kind, mid, reason in rec.events if kind == "dead"}
    assert dead == {1: "missing_rpm"}
    # A rate other than the configured one is a sensor fault, stored and counted, not diagnosed.
    by_sensor = {r.sensor: r for r in results}
    assert by_sensor["fixed"].rpm == 1797.0  # the fixed speed applies
    assert by_sensor["fixed"].predicted in classifier.classes
    wrong = by_sensor["s2"]
    assert wrong.predicted == "sensor_fault:sample_rate_mismatch"
    assert wrong.quality == ("sample_rate_mismatch",) and wrong.probabilities == {}
    assert "24000 Hz, configured 12000" in wrong.evidence
    assert b'slewguard_sensor_faults_total{check="sample_rate_mismatch"} 1.0' in \
        metrics.exposition()
    assert sorted(rec.acked) == [1, 2, 3]


def test_a_message_over_the_byte_budget_is_rejected_in_submit_never_queued(tmp_path, classifier):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    rec = Recorder(outbox)
    metrics = Metrics()
    good = fleet_messages(1, 1)[0]
    limit = len(good.payload)
    pipe = Pipeline(PipelineSettings(), classifier, outbox, SensorMap(CONFIG).resolve, metrics,
                    rec.ack, rec.dead_letter, max_payload_bytes=limit)
    over = inbound(good.topic, good.payload + b"\0", mid=7)
    assert pipe.submit(over) and pipe.queue.qsize() == 0  # done with, not queued
    assert rec.events == [("dead", 7, "too_large"), ("ack", 7, 0)]
    assert pipe.submit(good) and pipe.queue.qsize() == 1  # exactly the limit is taken
    assert pipe.process([over, good])[0].seq == 0  # process() checks too, before decoding
    assert rec.events[-3:-1] == [("dead", 7, "too_large"), ("ack", 7, 0)]
    text = metrics.exposition().decode()
    assert 'slewguard_windows_rejected_total{reason="too_large"} 2.0' in text
    assert 'slewguard_stage_duration_seconds_count{stage="decode"} 1.0' in text


def test_the_default_byte_budget_is_the_largest_window_the_sensors_allow():
    from slewguard.service.payload import HEADER_MAX_BYTES

    def budget(*rates, **ingest):
        sensors = [{"sensor_id": f"s{i}", "bearing": "cwru-6205", "sample_rate_hz": r}
                   for i, r in enumerate(rates)]
        return config_from_dict({"site": "y", "sensors": sensors, "ingest": ingest},
                                env={}).max_payload_bytes()

    assert budget(12_000.0, 25_600.0) == HEADER_MAX_BYTES + 4 * 60 * 25_600
    assert budget(12_000.0, None) == HEADER_MAX_BYTES + 4 * 60 * 50_000  # any rate may come
    assert budget(12_000.0, max_payload_bytes=5000) == 5000


def test_the_dead_letter_of_an_oversize_message_keeps_only_its_head():
    import base64

    big = inbound("a/b", bytes(range(256)) * 100)
    body = json.loads(dead_letter_envelope(big, "too_large", "x", max_payload_bytes=1000))
    assert body["payload_truncated"] and body["payload_bytes"] == 25_600
    assert base64.b64decode(body["payload_b64"]) == big.payload[:4096]
    whole = json.loads(dead_letter_envelope(big, "checksum", "x", max_payload_bytes=25_600))
    assert not whole["payload_truncated"]
    assert base64.b64decode(whole["payload_b64"]) == big.payload


def test_model_torch_threads_of_the_config_is_the_inference_threads_count(tmp_path, classifier):
    import torch

    settings = PipelineSettings.from_config(CONFIG.inference, CONFIG.model)
    assert settings.torch_threads == CONFIG.model.torch_threads == 1  # the daemon's default
    model = ThreadsSeen(classifier)
    pipe, outbox, rec, _ = make(tmp_path, model, settings)
    before = torch.get_num_threads()
    try:
        pipe.start()
        # Torch's process-wide count changes after start (another library, a second model):
        # the inference thread keeps the count it was configured with.
        torch.set_num_threads(2)
        messages = fleet_messages(1, 3)
        for m in messages:
            assert pipe.submit(m)
        pipe.stop(drain=True)
    finally:
        torch.set_num_threads(before)
    assert sorted(rec.acked) == [m.mid for m in messages]
    assert model.seen and set(model.seen) == {("pipeline-inference", 1)}


def test_the_queue_is_bounded_in_payload_bytes(tmp_path, classifier):
    messages = fleet_messages(1, 4)
    size = len(messages[0].payload)
    settings = PipelineSettings(max_batch=2, queue_size=100, queue_bytes=int(2.5 * size))
    pipe, _, _, _ = make(tmp_path, classifier, settings)
    assert pipe.submit(messages[0]) and pipe.submit(messages[1])
    blocked = threading.Thread(target=pipe.submit, args=(messages[2],))
    blocked.start()
    blocked.join(0.5)  # 3 x size > 2.5 x size: it waits although 98 places are free
    assert blocked.is_alive() and pipe.queue.qsize() == 2
    assert [m.mid for m in pipe.queue.take()] == [1, 2]  # a batch goes: its bytes come back
    blocked.join(2.0)
    assert not blocked.is_alive() and pipe.queue.qsize() == 1
    # one message larger than the whole budget still passes when the queue is empty
    pipe.queue.take()
    tight, _, _, _ = make(tmp_path / "tight", classifier,
                          PipelineSettings(queue_bytes=size // 10))
    assert tight.submit(messages[3]) and tight.queue.qsize() == 1
    # ... and a message waiting for room is refused (left unacked) when the pipeline closes
    waiting = threading.Thread(target=lambda: results.append(tight.submit(messages[0])))
    results: list[bool] = []
    waiting.start()
    waiting.join(0.3)
    tight._closing.set()
    waiting.join(2.0)
    assert results == [False]


def test_queue_bytes_comes_from_the_config():
    cfg = config_from_dict({"site": "y", "sensors": [{"sensor_id": "s", "bearing": "cwru-6205"}],
                            "inference": {"queue_bytes": 12345}}, env={})
    assert PipelineSettings.from_config(cfg.inference, cfg.model).queue_bytes == 12345


def test_the_settings_defaults_are_the_config_sections_defaults():
    # PipelineSettings() (programmatic use) and a config without an inference section must not
    # drift apart; torch_threads is ModelConfig's and differs on purpose (None: torch left alone)
    shared = {f.name for f in fields(PipelineSettings)} & set(InferenceConfig.model_fields)
    assert {"max_batch", "max_wait_ms", "queue_size", "queue_bytes", "signal_threads"} <= shared
    defaults = PipelineSettings()
    config = InferenceConfig()
    assert {name: getattr(defaults, name) for name in shared} == {
        name: getattr(config, name) for name in shared}


def test_stopped_threads_names_the_worker_that_is_not_running(tmp_path, classifier):
    pipe, outbox, _, _ = make(tmp_path, classifier)
    assert pipe.stopped_threads() == ["pipeline-features", "pipeline-inference"]  # not started
    assert not pipe.alive()
    pipe._run_inference = lambda: None  # the inference thread ends at once, as if it died
    pipe.start()
    pipe._threads[1].join(5)
    assert pipe.stopped_threads() == ["pipeline-inference"] and not pipe.alive()
    pipe.stop(timeout_s=5)
    assert pipe.stopped_threads() == ["pipeline-features", "pipeline-inference"]
    outbox.close()
