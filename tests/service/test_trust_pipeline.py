"""The trust layer in the running pipeline: sensor faults, calibration, "unknown", evidence.

A tiny real classifier is saved with a real fitted Trust (``models.ood.fit_trust`` on simulated
CWRU-6205 windows: OOD detector in ood.json, kinematic thresholds and a temperature in the card)
and loaded back with ``models.load``, as ``slewguard serve`` does.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from slewguard import models
from slewguard.models.calibrate import softmax
from slewguard.models.ood import Trust, fit_trust
from slewguard.models.shipped import load_default, shipped_model_dir
from slewguard.service.alerts import Voter
from slewguard.service.app import App, load_classifier
from slewguard.service.config import config_from_dict
from slewguard.service.config.alerts import AlertsConfig
from slewguard.service.config.mqtt import MqttConfig
from slewguard.service.ingest import Inbound, Ingest
from slewguard.service.metrics import Metrics
from slewguard.service.outbox import Outbox
from slewguard.service.payload import Window, encode_binary
from slewguard.service.pipeline import Pipeline, PipelineSettings
from slewguard.service.placement import SensorMap
from slewguard.service.trust import TrustLayer, load_trust
from slewguard.signal import features, numeric, textify
from slewguard.signal.kinematics import preset
from slewguard.signal.scenario import SimulationSpec
from slewguard.signal.simulate import simulate
from tests.service import services
from tests.service.conftest import tiny_classifier

FS, RPM, ORDER = 12000.0, 1797.0, 10.0
N = 3000  # 0.25 s windows: fast
START_NS = 1_700_000_000_000_000_000
TEMPERATURE = 0.25  # stored in the card (the random test model's fitted T is meaningless)
TRAIN_CLASSES = ("healthy", "outer_race", "inner_race")
BEARING_FAULTS = {"inner_race", "outer_race", "rolling_element", "cage", "combined"}


def sim(fault: str, n: int, seed: int) -> np.ndarray:
    spec = SimulationSpec(fault=fault, bearing="cwru-6205", rpm=RPM, sample_rate_hz=FS,
                          window_seconds=N / FS, snr_db=10.0)
    return simulate(spec, n_windows=n, seed=seed).windows.astype(np.float64)


def table(seed: int, n: int):
    windows = np.concatenate([sim(c, n, seed + i) for i, c in enumerate(TRAIN_CLASSES)])
    return (features.extract(windows.astype(np.float32), FS, preset("cwru-6205"), rpm=RPM),
            np.repeat(TRAIN_CLASSES, n))


@pytest.fixture(scope="module")
def trust_model(tmp_path_factory):
    """A saved tiny classifier with fit_trust's pieces, loaded back with models.load."""
    path = tmp_path_factory.mktemp("trust") / "tiny-trust"
    clf = tiny_classifier()
    clf.save(path)
    train, y_train = table(100, 20)
    held, y_held = table(200, 10)
    sections = fit_trust(path, clf.classes, train, y_train, held,
                         clf.predict_proba(textify.textify_table(held)), y_held)
    assert (path / "ood.json").is_file() and sections["kinematic_min_db"]
    sections["calibration"]["temperature"] = TEMPERATURE
    card = json.loads((path / "card.json").read_text()) | sections
    (path / "card.json").write_text(json.dumps(card))
    return models.load(path)


def injected() -> dict[str, np.ndarray]:
    """One healthy window with each data-quality fault injected (check name -> samples)."""
    base = sim("healthy", 1, 7)[0]
    rms = base.std()
    t = np.arange(N) / FS
    lim = 0.6 * np.abs(base).max()
    held, spiky = base.copy(), base.copy()
    held[1000:1200] = 0.0
    spiky[[500, 1500, 2500]] += 40 * rms
    return {"flat_line": np.zeros(N), "clipping": np.clip(base, -lim, lim), "dropout": held,
            "spikes": spiky, "dc_offset": base + 3 * rms,
            "drift": base + np.linspace(-3, 3, N) * rms,
            "loose_mount": np.random.default_rng(1).normal(size=N) * 3 * rms,
            "rpm_mismatch": base + 0.5 * rms * np.sin(2 * np.pi * ORDER * RPM * 1.06 / 60 * t),
            "out_of_range": np.where(np.arange(N) % 2 == 0, 3e38, -3e38)}


def config(expected_rms: float):
    """Sensor "q" has every expectation configured; the others none."""
    return config_from_dict({"site": "yard1", "sensors": [
        {"topic_filter": "plant/+/+/+/q/vib", "bearing": "cwru-6205", "sample_rate_hz": FS,
         "expected_rms": expected_rms, "order_lines": [ORDER]},
        {"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205"}]}, env={})


def message(asset: str, sensor: str, samples: np.ndarray, seq: int = 0,
            rate: float = FS) -> tuple[str, bytes]:
    w = Window(sensor, START_NS + seq * 10**9, rate, RPM, seq, "g", samples.astype(np.float32))
    return f"plant/yard1/{asset}/slew/{sensor}/vib", encode_binary(w, "float32")


@pytest.mark.services
def test_published_faults_become_counted_sensor_faults_and_odd_inputs_unknown(
        mosquitto, tmp_path, trust_model):
    clean = sim("healthy", 3, 999)
    t = np.arange(N) / FS
    clean_line = clean + 0.5 * clean.std() * np.sin(2 * np.pi * ORDER * RPM / 60 * t)
    faults = injected()
    rms = float(clean.std())
    odd = {"white": np.random.default_rng(3).normal(size=N) * rms,
           "sine1k": np.sin(2 * np.pi * 1000 * t) * rms * 1.414,
           "sine50": np.sin(2 * np.pi * 50 * t) * rms * 1.414}
    # (asset, sensor, samples, rate); each its own seq, so its own (sensor, start_ns) key
    plan = [(f"crane-{check}", "q", x, FS) for check, x in faults.items()]
    plan.append(("crane-rate", "q", np.tile(clean[0], 2), 2 * FS))
    plan += [("crane-clean", "q", x, FS) for x in clean_line]
    plan += [(f"odd-{name}", "o", x, FS) for name, x in odd.items()]
    sent = [message(a, s, x, seq=i, rate=r) for i, (a, s, x, r) in enumerate(plan)]

    metrics, outbox = Metrics(), Outbox(tmp_path / "o.sqlite3")
    holder: dict[str, Pipeline] = {}
    ingest = Ingest(MqttConfig(port=mosquitto.port, client_id="trust"), metrics,
                    lambda m: holder["pipe"].submit(m))
    pipe = Pipeline(PipelineSettings(max_batch=8, max_wait_ms=20), trust_model, outbox,
                    SensorMap(config(rms)).resolve, metrics, ingest.ack, lambda *a: None)
    holder["pipe"] = pipe
    pipe.start()
    ingest.start()
    try:
        assert ingest.subscribed.wait(10)
        services.publish(mosquitto.port, sent)
        deadline = time.monotonic() + 60
        while len(outbox.results_since(0)) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        pipe.stop()
        ingest.stop()
    results = {r.asset: r for _, r, _ in outbox.results_since(0) if r.asset != "crane-clean"}
    cleans = [r for _, r, _ in outbox.results_since(0) if r.asset == "crane-clean"]
    assert len(results) + len(cleans) == len(sent)

    exposition = metrics.exposition().decode()
    for check in [*faults, "sample_rate_mismatch"]:
        r = results["crane-rate" if check == "sample_rate_mismatch" else f"crane-{check}"]
        assert r.predicted == f"sensor_fault:{check}", (check, r.quality, r.evidence)
        assert check in r.quality and r.probabilities == {}
        assert r.features["sensor_fault"] == 1.0 and r.evidence.startswith("sensor fault")
        assert f'slewguard_sensor_faults_total{{check="{check}"}} 1.0' in exposition
    for r in cleans:  # a clean window raises no sensor fault, and says why it got its verdict
        assert r.quality == () and not r.predicted.startswith("sensor_fault"), r.evidence
        assert "kurtosis" in r.evidence and "sensor_fault" not in r.features
    for name in odd:  # never a bearing fault at the stored thresholds
        r = results[f"odd-{name}"]
        assert r.predicted == "unknown" or r.predicted.startswith("sensor_fault"), r
        assert r.evidence
    n_unknown = sum(r.predicted == "unknown" for r in [*results.values(), *cleans])
    assert n_unknown >= 1
    counted = sum(metrics.unknown_total.labels(reason=k)._value.get() for k in ("ood", "kinematic"))
    assert counted == n_unknown

    # No bearing-fault ticket from any sensor fault or odd input, even voting on one window.
    voter = Voter(AlertsConfig(k=1, n=1))
    events = [e for r in results.values() for e in voter.feed(r)]
    assert events and {e["fault"] for e in events} == {"sensor_fault"}


def test_reported_probabilities_are_softmax_of_logits_over_the_stored_temperature(
        tmp_path, trust_model):
    assert load_trust(trust_model).temperature == TEMPERATURE
    rec: list[str] = []
    pipe = Pipeline(PipelineSettings(), trust_model, Outbox(tmp_path / "o.sqlite3"),
                    SensorMap(config(1.0)).resolve, Metrics(), rec.append, lambda *a: None)
    topics = [message("c", "p", x, seq=i) for i, x in enumerate(sim("outer_race", 3, 5))]
    results = pipe.process([Inbound(t, p, i + 1, 1, time.monotonic(), 1)
                            for i, (t, p) in enumerate(topics)])
    assert len(results) == 3 and len(rec) == 3
    texts = [textify.textify(r.features) for r in results]
    with torch.no_grad():
        logits = trust_model.model(**trust_model.encode(texts)).logits.double().numpy()
    expected = softmax(logits / TEMPERATURE)
    got = np.array([[r.probabilities[c] for c in trust_model.classes] for r in results])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    raw = trust_model.predict_proba(texts)
    assert np.abs(got - raw).max() > 1e-3  # calibration changed them (T != 1)
    assert [r.confidence for r in results] == pytest.approx(expected.max(axis=1).tolist())
    assert all(r.evidence for r in results)


def test_a_fault_verdict_without_its_defect_line_is_unknown_and_baselines_explain_change():
    healthy = features.extract(sim("healthy", 12, 42).astype(np.float32), FS,
                               preset("cwru-6205"), rpm=RPM)
    rows = [healthy.row(i) for i in range(len(healthy))]
    classes = ["healthy", "outer_race"]
    # healthy windows read up to ~15 dB on their noisiest BPFO harmonic; faults 20-35 dB
    layer = TrustLayer(Trust(min_db={"outer_race": 18.0}))
    one_hot = np.tile([0.02, 0.98], (len(rows), 1))
    judged = layer.judge(classes, one_hot, healthy.names, healthy.values, rows, ["b"] * len(rows))
    assert {(v, reason) for v, _, reason, _ in judged} == {("unknown", "kinematic")}
    assert all("outer_race without its defect line" in text for *_, text in judged)
    # Healthy verdicts feed the bearing's baseline; a louder window is then explained against it.
    sure = np.tile([0.98, 0.02], (len(rows), 1))
    layer.judge(classes, sure, healthy.names, healthy.values, rows, ["b"] * len(rows))
    loud = dict(rows[0], rms=rows[0]["rms"] * 2)
    (verdict, _, _, text), = layer.judge(classes, sure[:1], healthy.names, healthy.values[:1],
                                         [loud], ["b"])
    assert verdict == "healthy" and "RMS +6 dB" in text and "vs baseline" in text


def test_torch_threads_setting_is_applied_at_start(tmp_path, classifier):
    before = torch.get_num_threads()
    sensors = [{"sensor_id": "s1", "bearing": "cwru-6205"}]
    assert config_from_dict({"site": "y", "sensors": sensors}, env={}).model.torch_threads == 1
    unset = {"site": "y", "sensors": sensors, "model": {"torch_threads": None}}
    assert config_from_dict(unset, env={}).model.torch_threads is None
    cfg = config_from_dict({"site": "y", "sensors": sensors, "model": {"torch_threads": 1}},
                           env={})
    pipe = Pipeline(PipelineSettings(torch_threads=1), classifier, Outbox(tmp_path / "o.db"),
                    SensorMap(cfg).resolve, Metrics(), lambda m: None, lambda *a: None)
    try:
        torch.set_num_threads(2)
        App(cfg, classifier=classifier)._start_model()  # the App's start step that loads the model
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        pipe.start()  # the pipeline's own setting (programmatic use)
        assert torch.get_num_threads() == 1
    finally:
        pipe.stop()
        torch.set_num_threads(before)


def test_signal_threads_and_model_dtype_settings_reach_the_pool_and_the_weights(
        tmp_path, classifier, saved_model):
    sensors = [{"sensor_id": "s1", "bearing": "cwru-6205"}]
    cfg = config_from_dict({"site": "y", "sensors": sensors,
                            "inference": {"signal_threads": 1},
                            "model": {"path": str(saved_model), "dtype": "bfloat16"}}, env={})
    assert config_from_dict({"site": "y", "sensors": sensors}, env={}).inference.signal_threads \
        is None
    pipe = Pipeline(PipelineSettings.from_config(cfg.inference, cfg.model), classifier,
                    Outbox(tmp_path / "o.db"),
                    SensorMap(cfg).resolve, Metrics(), lambda m: None, lambda *a: None)
    try:
        pipe.start()
        assert numeric.row_chunks(8) == [slice(0, 8)]  # one worker: one chunk
    finally:
        pipe.stop()
        numeric.set_threads(None)
    assert len(numeric.row_chunks(8)) == min(8, os.cpu_count() or 1)
    loaded = load_classifier(cfg)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


@pytest.mark.skipif(not (shipped_model_dir("fast") / "card.json").is_file(),
                    reason="no fast model shipped in slewguard/models/fast (docs/models.md: "
                    "the shipped models)")
def test_shipped_setting_runs_the_named_shipped_model():
    sensors = [{"sensor_id": "s1", "bearing": "cwru-6205"}]
    cfg = config_from_dict({"site": "y", "sensors": sensors, "model": {"shipped": "fast"}},
                           env={})
    app = App(cfg)
    app._start_model()  # the App's start step that loads the model
    assert app.model_label == "fast"
    assert app.classifier.template_version == "t3"  # it reads the evidence stage's text
    assert app.classifier.card["command"] == load_default(name="fast").card["command"]
    assert app.classifier.runtime == "onnx"  # float32 on the CPU with a model.onnx: the default
    cfg = config_from_dict({"site": "y", "sensors": sensors,
                            "model": {"shipped": "fast", "runtime": "torch"}}, env={})
    loaded = load_classifier(cfg)
    assert loaded.runtime == "torch"
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
