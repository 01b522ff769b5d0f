import numpy as np
import pytest
from scipy.signal import butter, lfilter

from slewguard.models.ood import (
    Decision,
    OodDetector,
    decide,
    fit_kinematic_thresholds,
    kinematic_consistent,
    line_evidence_db,
    window_features,
)
from slewguard.signal.datasets import SimulatedDatasetSpec, simulate_dataset
from slewguard.signal.features import FEATURE_NAMES, FeatureTable, extract
from slewguard.signal.kinematics import preset
from slewguard.signal.quality import QualityExpectations, QualityVerdict, check
from slewguard.signal.scenario import FAULT_CLASSES

FS, SECONDS, RPM = 5000.0, 12.0, 6.0


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Detector + kinematic thresholds fitted on simulated slewing windows, stored and reloaded."""
    spec = SimulatedDatasetSpec(windows_per_class=40, window_seconds=SECONDS, rpm_min=3.0,
                                rpm_max=12.0, bearings=("slew-4pc-1000", "slew-xr-1000"),
                                test_fraction=0.5, seed=3)
    split = simulate_dataset(spec, progress=False)
    train, test = window_features(split.train), window_features(split.test)
    half = np.arange(len(test)) % 2 == 0  # calibrate on one half, measure on the other
    heldout = FeatureTable(test.names, test.values[half])
    unseen = FeatureTable(test.names, test.values[~half])
    path = tmp_path_factory.mktemp("model") / "ood.json"
    OodDetector().fit(train).calibrate(heldout).save(path)
    min_db = fit_kinematic_thresholds(train, split.train.labels)
    return OodDetector.load(path), min_db, unseen, split.test.labels[~half]


def _ood_windows():
    rng = np.random.default_rng(0)
    n = int(FS * SECONDS)
    t = np.arange(n) / FS
    b, a = butter(4, [1500, 1800], btype="band", fs=FS)
    other_machine = (lfilter(b, a, rng.standard_normal((3, n))) + 0.5 * np.sin(2 * np.pi * 37 * t)
                     + 0.3 * np.sin(2 * np.pi * 74 * t) + 0.2 * rng.standard_normal((3, n)))
    return {
        "white": rng.standard_normal((3, n)),
        "pink": lfilter([1.0], [1.0, -0.95], rng.standard_normal((3, n))),
        "brown": np.cumsum(rng.standard_normal((3, n)), axis=1),
        "sine_50hz": np.sin(2 * np.pi * 50 * t)[None] + 0.01 * rng.standard_normal((3, n)),
        "sine_733hz": 3 * np.sin(2 * np.pi * 733 * t + rng.random((3, 1))),
        "other_machine": other_machine,
    }


@pytest.mark.parametrize("kind", list(_ood_windows()))
def test_out_of_distribution_inputs_never_become_a_bearing_fault(fitted, kind):
    detector, min_db, _, _ = fitted
    x = _ood_windows()[kind]
    table = extract(x, FS, preset("slew-4pc-1000"), rpm=RPM)
    scores = detector.score(table)
    expect = QualityExpectations(sample_rate_hz=FS, rpm=RPM, order_lines=(120.0,))
    verdicts = check(x, FS, expect)
    for i in range(len(x)):
        for predicted in FAULT_CLASSES:  # whatever the classifier would say
            d = decide(predicted, table.row(i), quality=verdicts[i], ood_score=float(scores[i]),
                       detector=detector, min_db=min_db)
            assert d.verdict == "unknown" or d.verdict.startswith("sensor_fault:"), (kind, d)
            assert d.reason


def test_in_distribution_windows_keep_their_class(fitted):
    detector, min_db, unseen, labels = fitted
    assert detector.threshold is not None and detector.n_heldout == len(unseen)
    assert detector.is_ood(unseen).mean() <= 0.1
    scores = detector.score(unseen)
    kept = [decide(label, unseen.row(i), ood_score=float(scores[i]), detector=detector,
                   min_db=min_db).verdict == label for i, label in enumerate(labels)]
    assert np.mean(kept) >= 0.8


def test_thresholds_are_chosen_on_data_and_separate_the_lines(fitted):
    _, min_db, unseen, labels = fitted
    assert set(min_db) == {"inner_race", "outer_race", "rolling_element"}
    assert all(3.0 < v < 35.0 for v in min_db.values())  # faults read ~17-35 dB at 0-12 dB SNR
    outer = [unseen.row(i) for i in np.flatnonzero(labels == "outer_race")]
    healthy = [unseen.row(i) for i in np.flatnonzero(labels == "healthy")]
    assert np.mean([kinematic_consistent("outer_race", r, min_db) for r in outer]) >= 0.8
    # a healthy window claimed as a fault mostly lacks the line (BPFI sits 6 % from BPFO on a
    # slewing ring, so its noise-level evidence is the closest call)
    assert np.mean([kinematic_consistent("outer_race", r, min_db) for r in healthy]) <= 0.2
    assert np.mean([kinematic_consistent("inner_race", r, min_db) for r in healthy]) <= 0.5


def test_json_round_trip_keeps_scores(fitted):
    detector = fitted[0]
    again = OodDetector.from_json(detector.to_json())
    table = fitted[2]
    np.testing.assert_array_equal(again.score(table), detector.score(table))
    assert again.threshold == detector.threshold and again.names == detector.names
    assert "rms" not in again.names  # a sensor's gain is not a new machine


def test_evidence_side_is_one_sided():
    names = ("band1_db", "kurtosis", "env_bpfo_h1_db")
    rng = np.random.default_rng(1)
    train = FeatureTable(names, rng.normal(size=(300, 3)))
    det = OodDetector(range_quantile=0.0).fit(train).calibrate(train)
    strong_fault = FeatureTable(names, np.array([[0.0, 40.0, 40.0]]))
    too_smooth = FeatureTable(names, np.array([[0.0, -40.0, 0.0]]))
    assert not det.is_ood(strong_fault)[0]
    assert det.is_ood(too_smooth)[0] and det.worst_feature(too_smooth) == ["kurtosis"]


def test_decide_order_and_reasons():
    row = {f"env_{line}_h{k}_db": 0.0 for line in ("ftf", "bpfo", "bpfi", "bsf2")
           for k in (1, 2, 3)}
    row["env_bpfo_h2_db"] = 15.0
    assert line_evidence_db(row, "bpfo_hz") == 15.0
    clipped = QualityVerdict(False, ("clipping", "spikes"), "clipping: 40 samples on the rail")
    assert decide("outer_race", row, quality=clipped) == Decision(
        "sensor_fault:clipping", "clipping: 40 samples on the rail")
    assert decide("outer_race", row, min_db=10.0).verdict == "outer_race"
    unknown = decide("inner_race", row, min_db=10.0)
    assert unknown.verdict == "unknown" and "BPFI 0 dB" in unknown.reason
    assert decide("healthy", row, min_db=10.0).verdict == "healthy"
    assert decide("cage", row, min_db={"outer_race": 10.0}).verdict == "cage"  # not fitted


def test_nan_features_are_out_of_distribution(fitted):
    detector, min_db, unseen, _ = fitted
    row = unseen.row(0) | {"band_sk": float("nan")}
    assert decide("healthy", row, detector=detector, min_db=min_db).verdict == "unknown"
    nan_table = FeatureTable(unseen.names, unseen.values[:2].copy())
    nan_table.values[0, nan_table.names.index("sk_max")] = np.nan
    assert detector.is_ood(nan_table).tolist()[0] is True


def test_own_line_must_be_the_strongest_impact_line():
    row = {f"env_{line}_h{k}_db": 0.0 for line in ("ftf", "bpfo", "bpfi", "bsf2")
           for k in (1, 2, 3)}
    row |= {"env_bpfo_h1_db": 15.0, "env_bpfi_h2_db": 20.0}
    assert not kinematic_consistent("outer_race", row, 10.0)
    assert kinematic_consistent("outer_race", row, 10.0, dominance_db=None)
    assert kinematic_consistent("outer_race", row, 10.0, dominance_db=6.0)
    assert kinematic_consistent("inner_race", row, 10.0)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="not fitted"):
        OodDetector().score(FeatureTable(("rms",), np.zeros((1, 1))))
    with pytest.raises(ValueError, match="no threshold"):
        det = OodDetector().fit(FeatureTable(FEATURE_NAMES, np.zeros((20, len(FEATURE_NAMES)))))
        det.is_ood(FeatureTable(FEATURE_NAMES, np.zeros((1, len(FEATURE_NAMES)))))
    with pytest.raises(ValueError, match="not a fault class"):
        kinematic_consistent("broken", {}, 5.0)
    with pytest.raises(ValueError, match="format"):
        OodDetector.from_json('{"format": "other"}')


def test_decide_scores_the_row_itself_and_names_the_furthest_feature(fitted):
    detector, min_db, unseen, _ = fitted
    x = _ood_windows()["sine_733hz"][:1]
    row = extract(x, FS, preset("slew-4pc-1000"), rpm=RPM).row(0)
    d = decide("outer_race", row, detector=detector, min_db=min_db)
    assert d.verdict == "unknown" and "furthest:" in d.reason and "?" not in d.reason


def test_fit_trust_writes_what_trust_load_reads(fitted, tmp_path):
    from slewguard.models.ood import Trust, fit_trust

    _, _, table, labels = fitted
    classes = ["healthy", "inner_race", "outer_race", "rolling_element"]
    rng = np.random.default_rng(0)
    truth = np.array([classes.index(c) for c in labels])
    said = np.where(rng.random(len(truth)) < 0.3, (truth + 1) % 4, truth)  # 30 % wrong ...
    logits = 6 * np.eye(4)[said] + rng.normal(size=(len(labels), 4))  # ... at ~99 % confidence
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    card = fit_trust(tmp_path, classes, table, labels, table, proba, labels)
    assert (tmp_path / "ood.json").is_file() and (tmp_path / "reliability.png").is_file()
    assert card["calibration"]["applied"], card["calibration"]["reason"]
    assert card["calibration"]["temperature"] > 1.0  # over-confident logits get softened
    trust = Trust.load(tmp_path, card)
    assert trust.detector is not None and trust.min_db == card["kinematic_min_db"]
    probs, decisions = trust.judge(classes, proba, table)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == proba.argmax(axis=1)).all()
    assert probs.max(axis=1).mean() < proba.max(axis=1).mean()
    assert len(decisions) == len(labels)
    assert {d.verdict for d in decisions} <= set(classes) | {"unknown"}
    neutral = Trust.load(tmp_path / "nothing", {})
    assert neutral.temperature == 1.0 and neutral.detector is None
    with pytest.raises(ValueError, match="not in classes"):
        fit_trust(tmp_path, classes[:2], table, labels, table, proba, labels)
