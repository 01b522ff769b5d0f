"""A model of template t3 in the daemon: it reads the evidence stage, never the features."""

from __future__ import annotations

import time

import numpy as np
import pytest

from slewguard.models import card as model_card
from slewguard.models.classifier import FaultClassifier, load, train_classifier
from slewguard.models.ood import OodDetector
from slewguard.service import features_stage
from slewguard.service.config import config_from_dict
from slewguard.service.evidence_stage import EvidenceStage
from slewguard.service.ingest import Inbound
from slewguard.service.metrics import Metrics
from slewguard.service.outbox import Outbox
from slewguard.service.payload import Window, encode_binary
from slewguard.service.pipeline import Pipeline, PipelineSettings
from slewguard.service.placement import SensorMap
from slewguard.service.trust import TrustLayer, load_trust
from slewguard.signal import textify_evidence
from slewguard.signal.evidence import impact_train
from slewguard.signal.features import FeatureTable
from slewguard.signal.kinematics import preset

FS, RPM = 12000.0, 1797.0
ORDERS = preset("cwru-6205").orders()
TOPIC = "plant/yard1/crane1/slew/acc1/vib"
CLASSES = ("healthy", "inner_race", "outer_race", "rolling_element")


def _texts() -> tuple[list[str], list[str]]:
    """t3 texts the way the evidence reads each class: a race line, a level rise, neither."""
    texts, labels = [], []
    for level in [*map(str, range(10)), "nobase"]:
        for weak in ("0", "1", "2"):
            texts += [f"outer 9 inner {weak} level {level}", f"outer 8 inner {weak} level {level}",
                      f"outer {weak} inner 9 level {level}", f"outer {weak} inner 8 level {level}"]
            labels += ["outer_race", "outer_race", "inner_race", "inner_race"]
            if level in ("0", "1", "2", "nobase"):
                texts.append(f"outer {weak} inner {weak} level {level}")
                labels.append("healthy")
            elif level in ("8", "9"):
                texts.append(f"outer {weak} inner {weak} level {level}")
                labels.append("rolling_element")
    return texts, labels


@pytest.fixture(scope="module")
def t3_model(tmp_path_factory) -> FaultClassifier:
    """A tiny BERT trained (seconds) on t3 texts, saved and loaded as the daemon loads it."""
    texts, labels = _texts()
    clf, _ = train_classifier(texts, labels, texts, labels, classes=CLASSES, family="tiny-bert",
                              vocabulary=textify_evidence.vocabulary(), epochs=40, lr=3e-3,
                              batch_size=8, seed=0, show_progress=False,
                              template_version="t3")
    path = tmp_path_factory.mktemp("t3") / "model"
    clf.save(path)
    return load(path)


def _message(x: np.ndarray, seq: int) -> Inbound:
    w = Window("acc1", 1_700_000_000_000_000_000 + seq * 10**9, FS, RPM, seq, "g",
               np.asarray(x, np.float32))
    return Inbound(TOPIC, encode_binary(w, "float32"), seq + 1, 1, time.monotonic(), 1)


def _pipeline(tmp_path, classifier, evidence=True, dead=None):
    cfg = config_from_dict({"site": "yard1", "sensors": [
        {"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205", "rpm": RPM}],
        "evidence": {"baseline_windows": 2}}, env={})
    stage = EvidenceStage(cfg.evidence, tmp_path / "baselines.json") if evidence else None
    sink = dead if dead is not None else []
    return Pipeline(PipelineSettings(), classifier, Outbox(tmp_path / "outbox.sqlite3"),
                    SensorMap(cfg).resolve, Metrics(), lambda m: True,
                    lambda m, r, d: sink.append((r, d)), evidence=stage)


def _healthy(seed: int) -> np.ndarray:
    return 0.05 * np.random.default_rng(seed).normal(size=int(FS))


def test_a_t3_model_reads_the_evidence_text_and_no_features(tmp_path, t3_model, monkeypatch):
    def no_features(*_args, **_kwargs):
        raise AssertionError("a t3 model must not make the pipeline compute features")
    monkeypatch.setattr(features_stage, "_extract_table", no_features)
    seen: list[str] = []
    predict = t3_model.predict_proba
    monkeypatch.setattr(t3_model, "predict_proba", lambda texts: seen.extend(texts) or
                        predict(texts))
    pipe = _pipeline(tmp_path, t3_model)
    learning = pipe.process([_message(_healthy(s), s) for s in range(2)])
    assert [r.features["has_baseline"] for r in learning] == [0.0, 0.0]
    assert all(t.endswith("level nobase") for t in seen)
    healthy, outer, inner = pipe.process([
        _message(_healthy(10), 10),
        _message(0.05 * impact_train(FS, 1.0, RPM / 60 * ORDERS.bpfo_hz, seed=3), 11),
        _message(0.05 * impact_train(FS, 1.0, RPM / 60 * ORDERS.bpfi_hz, seed=4), 12)])
    assert seen[2:] == [textify_evidence.textify(r.features) for r in (healthy, outer, inner)]
    assert seen[3].startswith("outer 9 ") and " inner 9 " in seen[4]
    assert (healthy.predicted, outer.predicted, inner.predicted) == (
        "healthy", "outer_race", "inner_race")
    assert "BPFO line" in outer.evidence and "over their floors" in outer.evidence
    assert "envelope rule: outer_race" in outer.evidence
    assert "env_bpfo_h1_db" not in outer.features and outer.features["bpfo_h1_db"] > 20


def test_a_t3_model_without_the_evidence_stage_is_refused(tmp_path, t3_model):
    with pytest.raises(ValueError, match="template 't3'.*evidence.enabled is false.*set "
                                         "evidence.enabled: true"):
        _pipeline(tmp_path, t3_model, evidence=False)


def test_a_window_the_evidence_cannot_read_is_dead_lettered(tmp_path, t3_model, monkeypatch):
    def unreadable(*_args, **_kwargs):
        raise ValueError("window too short for the slowest line")
    monkeypatch.setattr(features_stage, "extract_evidence", unreadable)
    dead: list = []
    pipe = _pipeline(tmp_path, t3_model, dead=dead)
    assert pipe.process([_message(_healthy(1), 1)]) == []
    assert dead and dead[0][0] == "evidence" and TOPIC in dead[0][1]


def test_ood_over_evidence_is_one_sided_on_fault_evidence(tmp_path):
    names = ("bpfo_h1_db", "bpfi_h1_db", "rms_rel_db", "speed_confidence_db")
    rng = np.random.default_rng(0)
    train = FeatureTable(names, rng.normal([5, 5, 0, 6], 1, size=(400, 4)))
    det = OodDetector(range_quantile=0.0).fit(train).calibrate(train)
    far = np.array([[60.0, 5, 40.0, 6], [5, 5, -30.0, 6]])
    # a line or a level rise stronger than any in training: more evidence, not a new machine;
    # a level far below its baseline is
    assert det.is_ood(FeatureTable(names, far)).tolist() == [False, True]


def test_known_templates_load_and_others_are_refused(t3_model):
    card = model_card.ModelCard.model_validate(t3_model.card)
    model_card.check_template(card, t3_model.model_dir)
    with pytest.raises(ValueError, match="template 't2', this slewguard speaks 't1' and 't3'"):
        model_card.check_template(card.model_copy(update={"template_version": "t2"}), "m")


def test_the_trust_layer_explains_evidence_rows_in_their_words(t3_model):
    row = {"bpfo_h1_db": 3.0, "bpfi_h1_db": 21.0, "rms_rel_db": 4.0, "has_baseline": 1.0}
    layer = TrustLayer(load_trust(t3_model))
    names = tuple(row)
    (verdict, _, reason, text), = layer.judge(
        list(CLASSES), np.array([[0.1, 0.7, 0.1, 0.1]]), names,
        np.array([list(row.values())]), [row], ["b"], evidence_rows=True)
    assert (verdict, reason) == ("inner_race", "")
    assert text == textify_evidence.explain(row)


def test_predict_feeds_a_t3_model_the_evidence_text_of_a_data_set(t3_model, tmp_path, capsys):
    from slewguard.cli import main
    from slewguard.signal import datasets

    spec = datasets.SimulatedDatasetSpec(windows_per_class=3, window_seconds=10.0, rpm_min=6.0,
                                         snr_db_min=20.0, snr_db_max=20.0, severity_min=2.0,
                                         severity_max=2.0, seed=5)
    datasets.write(datasets.simulate_dataset(spec, progress=False), tmp_path / "data")
    assert main(["predict", str(t3_model.model_dir), "--data", str(tmp_path / "data")]) == 0
    printed = capsys.readouterr().out
    assert "template t3" in printed and "level nobase" in printed
    assert "test accuracy" in printed
