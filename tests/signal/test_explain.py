import numpy as np
import pytest

from slewguard.signal.explain import EVIDENCE_DB, MAX_CHARS, BaselineTracker, explain
from slewguard.signal.features import extract
from slewguard.signal.kinematics import preset
from slewguard.signal.lines import LINES
from slewguard.signal.scenario import SimulationSpec
from slewguard.signal.simulate import simulate


def _rows(fault, n=3, seed=4, snr_db=10.0, severity=1.0):
    spec = SimulationSpec(fault=fault, window_seconds=16.0, snr_db=snr_db, severity=severity)
    sim = simulate(spec, n_windows=n, seed=seed)
    table = extract(sim.windows, 5000.0, preset(spec.bearing), rpm=sim.rpm)
    return [table.row(i) for i in range(n)]


@pytest.mark.parametrize(("fault", "label"), [("outer_race", "BPFO"), ("inner_race", "BPFI")])
def test_simulated_fault_names_its_line_first(fault, label):
    for row in _rows(fault):
        text = explain(row)
        assert text.startswith(label + " "), text
        assert f"kurtosis {row['kurtosis']:.1f}" in text and len(text) <= MAX_CHARS


def test_baseline_change_is_reported_in_db():
    tracker = BaselineTracker(alpha=0.1, min_windows=3)
    healthy = _rows("healthy", n=1)[0]  # a steady bearing: the same window three times
    for _ in range(3):
        tracker.update("site/crane/slew", healthy)
    baseline = tracker.get("site/crane/slew")
    assert baseline is not None and tracker.get("other") is None
    louder = dict(healthy, rms=2 * healthy["rms"])
    text = explain(louder, baseline)
    assert "RMS +6 dB" in text and text.endswith("vs baseline")
    assert explain(healthy, baseline).endswith("as baseline")


def test_developing_fault_shows_against_its_own_baseline():
    tracker = BaselineTracker(min_windows=2)
    for row in _rows("healthy", n=3):
        tracker.update("b1", row)
    text = explain(_rows("outer_race", n=1, severity=3.0)[0], tracker.get("b1"))
    assert text.startswith("BPFO") and "BPFO +" in text.split(";")[-1], text


def test_harmonic_count_and_threshold():
    row = {f"env_{line}_h{k}_db": 0.0 for line in LINES for k in (1, 2, 3)}
    row |= {"env_bpfi_h1_db": EVIDENCE_DB + 1, "env_bpfi_h2_db": EVIDENCE_DB - 1,
            "env_bpfo_h1_db": 30.0, "env_bpfo_h2_db": 25.0, "env_bpfo_h3_db": 20.0}
    assert explain(row) == "BPFO 3 harmonics +30 dB, BPFI +13 dB"
    assert explain({}) == "no defect line over 12 dB"


def test_text_is_capped_and_nan_safe():
    row = {f"env_{line}_h{k}_db": 40.0 for line in LINES for k in (1, 2, 3)}
    row |= {"rms": float("nan"), "kurtosis": 123456789.0, "crest_factor": 987654321.0}
    assert "nan" not in explain({"kurtosis": float("nan"), "crest_factor": 4.0}).lower()
    baseline = {"rms_power": 1.0, "kurtosis": 0.0, "crest_factor": 3.0,
                **{f"{line}_db": 0.0 for line in LINES}}
    text = explain(row, baseline)
    assert len(text) <= MAX_CHARS and "nan" not in text.lower()


def test_tracker_json_round_trip_and_ewma():
    tracker = BaselineTracker(alpha=0.5, min_windows=1)
    for rms in (1.0, 3.0, 3.0):
        tracker.update("k", {"rms": rms, "kurtosis": 0.0, "crest_factor": 3.0})
    # warm-up mean of 1 and 9 (power) = 5, then EWMA 0.5 towards 9 = 7
    assert tracker.get("k")["rms_power"] == pytest.approx(7.0)
    again = BaselineTracker.from_json(tracker.to_json())
    assert again.get("k") == tracker.get("k") and again.counts == {"k": 3}


def test_bad_tracker_settings_raise():
    with pytest.raises(ValueError, match="alpha=0"):
        BaselineTracker(alpha=0.0)
    with pytest.raises(ValueError, match="min_windows=0"):
        BaselineTracker(min_windows=0)


def test_float32_features_read_like_floats():
    row = _rows("rolling_element", n=1)[0]
    as_f32 = {k: np.float32(v) for k, v in row.items()}
    assert explain(as_f32) == explain(row)
