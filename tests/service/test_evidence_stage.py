"""The evidence stage in the pipeline: speed estimate, commissioning baseline, envelope rule."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest

from slewguard.service.baselines import BaselineStore
from slewguard.service.config import config_from_dict
from slewguard.service.config.evidence import EvidenceConfig
from slewguard.service.evidence_stage import EvidenceStage, baseline_path
from slewguard.service.ingest import Inbound
from slewguard.service.metrics import Metrics
from slewguard.service.outbox import Outbox
from slewguard.service.payload import Window, encode_binary
from slewguard.service.pipeline import Pipeline, PipelineSettings
from slewguard.service.placement import SensorMap
from slewguard.signal.evidence import impact_train
from slewguard.signal.kinematics import preset
from tests.service.vm import victoria_metrics  # noqa: F401 - pytest fixture

FS, RPM_TRUE = 12000.0, 1797.0
RPM_NOMINAL = RPM_TRUE * 1.04  # a setpoint 4 % off
BPFO_HZ = RPM_TRUE / 60 * preset("cwru-6205").orders().bpfo_hz
TOPIC = "plant/yard1/crane1/slew/acc1/vib"


def _config(verdict: str = "model", windows: int = 3) -> dict:
    return config_from_dict({"site": "yard1", "sensors": [
        {"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205", "rpm_source": "nominal",
         "rpm_uncertainty": 0.08}],
        "evidence": {"baseline_windows": windows, "verdict": verdict}}, env={})


def _message(x: np.ndarray, seq: int) -> Inbound:
    w = Window("acc1", 1_700_000_000_000_000_000 + seq * 10**9, FS, RPM_NOMINAL, seq, "g",
               np.asarray(x, np.float32))
    return Inbound(TOPIC, encode_binary(w, "float32"), seq + 1, 1, time.monotonic(), 1)


def _pipeline(tmp_path, classifier, cfg):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    stage = EvidenceStage(cfg.evidence, tmp_path / "baselines.json")
    pipe = Pipeline(PipelineSettings(), classifier, outbox, SensorMap(cfg).resolve, Metrics(),
                    lambda m: True, lambda m, r, d: None, evidence=stage)
    return pipe, outbox


def _healthy(seed: int) -> np.ndarray:
    return 0.05 * np.random.default_rng(seed).normal(size=int(FS))


def test_baseline_is_learned_then_level_and_lines_decide(tmp_path, classifier):
    pipe, outbox = _pipeline(tmp_path, classifier, _config())
    learning = pipe.process([_message(_healthy(s), s) for s in range(3)])
    assert [r.features["has_baseline"] for r in learning] == [0.0, 0.0, 0.0]
    assert all("learning the baseline" in r.evidence for r in learning)
    healthy, louder, outer = pipe.process([
        _message(_healthy(10), 10), _message(3 * _healthy(11), 11),
        _message(0.05 * impact_train(FS, 1.0, BPFO_HZ, seed=3), 12)])
    assert healthy.features["has_baseline"] == 1.0
    assert abs(healthy.features["rms_rel_db"]) < 1.0
    assert "envelope rule: healthy" in healthy.evidence
    assert louder.features["rms_rel_db"] == pytest.approx(20 * np.log10(3), abs=1.0)
    assert "envelope rule: rolling_element" in louder.evidence
    assert "envelope rule: outer_race" in outer.evidence and outer.features["rule_fault"] == 1.0
    # the nominal speed was 4 % high; the window's own comb gives the true one
    assert outer.features["rpm_nominal"] == pytest.approx(RPM_NOMINAL)
    assert outer.rpm == pytest.approx(RPM_TRUE, rel=0.005)
    assert outer.features["rpm_estimated"] == outer.rpm
    # the model still decides (verdict: model), the fields reach the outbox
    assert outer.predicted in classifier.classes
    stored = [r for _, r in outbox.claim(100) if r.seq == 12]
    assert [round(r.features["rpm_estimated"]) for r in stored] == [round(outer.rpm)]


def test_rule_verdict_replaces_the_model_when_configured(tmp_path, classifier):
    pipe, _ = _pipeline(tmp_path, classifier, _config("envelope_rule", windows=2))
    pipe.process([_message(_healthy(s), s) for s in range(2)])
    healthy, outer = pipe.process([_message(_healthy(20), 20), _message(
        0.05 * impact_train(FS, 1.0, BPFO_HZ, seed=4), 21)])
    assert (healthy.predicted, outer.predicted) == ("healthy", "outer_race")
    assert outer.evidence.startswith("envelope rule: outer_race") and "model:" in outer.evidence


def test_baseline_survives_a_restart_and_a_reset_relearns(tmp_path):
    path = tmp_path / "b.json"
    store = BaselineStore(path, n_windows=2)
    for s in range(2):
        assert store.observe("k", _healthy(s), 3.0) is None
    assert store.get("k") is not None
    again = BaselineStore(path, n_windows=2)  # a restart reads the file
    assert again.observe("k", _healthy(5), 3.0).rms == pytest.approx(store.get("k").rms)
    BaselineStore(path, n_windows=2).reset("k")  # `slewguard baseline reset` from outside
    assert again.observe("k", _healthy(6), 3.0) is None  # the running one relearns
    with pytest.raises(ValueError, match="no baseline for bearing 'nope'"):
        again.reset("nope")


def test_a_bearing_faulty_at_commissioning_is_suspect(tmp_path):
    store = BaselineStore(None, n_windows=3)
    for s in range(3):
        store.observe("k", _healthy(s), 25.0)  # strong race line in every window
    assert store.get("k").suspect
    stage = EvidenceStage(EvidenceConfig(baseline_windows=1), None)
    stage.baselines = store
    out = stage.window("k", _healthy(9), FS, preset("cwru-6205"), RPM_TRUE, 0.0)
    assert out.fields["has_baseline"] == 0.0 and "baseline suspect" in out.reason


def test_bad_baselines_file_names_the_key(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="evidence.baseline_path"):
        BaselineStore(path, 3)
    with pytest.raises(ValueError, match="baseline_windows=0"):
        BaselineStore(None, 0)


def test_config_keys(tmp_path):
    cfg = config_from_dict({"site": "y", "outbox": {"path": str(tmp_path / "o.sqlite3")},
                            "sensors": [{"topic_filter": "#", "bearing": "cwru-6205"}]}, env={})
    assert baseline_path(cfg) == tmp_path / "o-baselines.json"
    with pytest.raises(ValueError, match="verdict"):
        config_from_dict({"site": "y", "sensors": [{"topic_filter": "#", "bearing": "cwru-6205"}],
                          "evidence": {"verdict": "vote"}}, env={})
    with pytest.raises(ValueError, match="rpm_uncertainty"):
        config_from_dict({"site": "y", "sensors": [{"topic_filter": "#", "bearing": "cwru-6205",
                                                    "rpm_uncertainty": 0.5}]}, env={})


def test_baseline_command_shows_and_resets(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"site: y\noutbox:\n  path: {tmp_path / 'o.sqlite3'}\nevidence:\n"
                   "  baseline_windows: 2\nsensors:\n  - topic_filter: '#'\n"
                   "    bearing: cwru-6205\n")
    store = BaselineStore(tmp_path / "o-baselines.json", 2)
    for s in range(2):
        store.observe("y/a/b/acc1", _healthy(s), 3.0)
    store.observe("y/a/c/acc1", _healthy(7), 3.0)

    def run(*argv):
        return subprocess.run([sys.executable, "-m", "slewguard.cli", "baseline", *argv, "--config",
                               str(cfg)], capture_output=True, text=True, check=True).stdout

    shown = run("show")
    assert "y/a/b/acc1: rms" in shown and "y/a/c/acc1: learning, 1 of 2 windows" in shown
    assert "reset 1 bearing(s): y/a/b/acc1" in run("reset", "--bearing", "y/a/b/acc1")
    assert BaselineStore(tmp_path / "o-baselines.json", 2).get("y/a/b/acc1") is None


def test_a_nominal_rpm_is_not_an_rpm_mismatch_sensor_fault():
    """The order-line rpm check would call a window whose setpoint is 6 % off a sensor fault;
    with rpm_source nominal the speed is fitted instead, so the check stays out."""
    from dataclasses import replace
    from types import SimpleNamespace

    from slewguard.service.trust import TrustLayer, split_by_quality

    fs, rpm, order, n = 5000.0, 600.0, 40.0, 20000
    t = np.arange(n) / fs
    x = np.random.default_rng(0).normal(size=n) + np.sin(2 * np.pi * order * rpm * 1.06 / 60 * t)
    cfg = config_from_dict({"site": "y", "sensors": [
        {"topic_filter": "#", "bearing": "cwru-6205", "order_lines": [order]}]}, env={})
    w = Window("q", 0, fs, rpm, 0, "g", x.astype(np.float32))
    place = SensorMap(cfg).resolve("plant/y/a/b/q/vib", w)
    measured = SimpleNamespace(place=place, rpm=rpm, window=w)
    nominal = SimpleNamespace(place=replace(place, rpm_uncertainty=0.08), rpm=rpm, window=w)
    clean, faulty = split_by_quality(TrustLayer(), [measured], print)
    assert [v.faults for _, v, _ in faulty] == [("rpm_mismatch",)]
    clean, faulty = split_by_quality(TrustLayer(), [nominal], print)
    assert clean == [nominal] and not faulty


def test_the_speed_estimate_and_the_evidence_reach_the_database(tmp_path, classifier,
                                                                victoria_metrics):  # noqa: F811
    """rpm_nominal, rpm_estimated and the rule's fields land as numeric fields of the point."""
    from slewguard.service.sinks.influx import InfluxConfig, InfluxSink

    pipe, _ = _pipeline(tmp_path, classifier, _config(windows=1))
    now_s = time.time_ns() // 10**9 - 600  # recent: VictoriaMetrics keeps a month
    msgs = [_message(_healthy(0), 0), _message(0.05 * impact_train(FS, 1.0, BPFO_HZ, seed=5), 1)]
    results = pipe.process(msgs)
    shifted = [replace(r, start_ns=(now_s + i) * 10**9) for i, r in enumerate(results)]
    InfluxSink(InfluxConfig(url=victoria_metrics.url, token="t", measurement="diag")).write(
        shifted)
    estimated = victoria_metrics.points("diag_rpm_estimated")
    nominal = victoria_metrics.points("diag_rpm_nominal")
    rule = victoria_metrics.points("diag_rule_fault")
    by_time = {t: v for pts in estimated.values() for t, v in pts}
    faulty_ms = (now_s + 1) * 1000  # the outer-race window: its comb gives the true speed
    assert by_time[faulty_ms] == pytest.approx(RPM_TRUE, rel=0.005)
    assert [v for pts in nominal.values() for _, v in pts] == [pytest.approx(RPM_NOMINAL)] * 2
    assert sorted(v for pts in rule.values() for _, v in pts) == [0.0, 1.0]
