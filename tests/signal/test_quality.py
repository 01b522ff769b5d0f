import itertools
import re
import warnings

import numpy as np
import pytest

from slewguard.signal.quality import (
    QUALITY_FAULTS,
    QualityExpectations,
    QualityThresholds,
    check,
)
from slewguard.signal.quality_spectral import line_frequency_hz, spectral_flatness
from slewguard.signal.scenario import FAULT_CLASSES, SimulationSpec
from slewguard.signal.simulate import simulate

FS = 5000.0
BEARINGS = ("slew-4pc-1000", "slew-xr-1000", "pitch-4pc-2200")
PROFILES = ("constant", "oscillating", "stop_start")
MESH_ORDER = 120.0  # GearSpec.ring_teeth default


def _spec(fault="healthy", snr_db=0.0, bearing="slew-4pc-1000", profile="constant", rpm=None):
    cage = fault == "cage"  # the cage line is slow: it needs a fast shaft and a long window
    rpm = rpm or (12.0 if cage else 6.0)
    return SimulationSpec(fault=fault, snr_db=snr_db, bearing=bearing, speed_profile=profile,
                          rpm=rpm, window_seconds=40.0 if cage else 16.0, sample_rate_hz=FS,
                          speed_period_seconds=8.0)


def _expect(spec, baseline_rms):
    return QualityExpectations(sample_rate_hz=FS, rpm=spec.rpm, order_lines=(MESH_ORDER,),
                               constant_speed=spec.speed_profile == "constant", rms=baseline_rms)


def _window_and_baseline(spec, seed=1):
    """One window and the median RMS of the same machine in 4 other windows (its baseline)."""
    sim = simulate(spec, n_windows=5, seed=seed)
    return sim.windows[0].astype(np.float64), float(np.median(sim.windows[1:].std(axis=1)))


CLEAN_CASES = [
    (fault, snr, BEARINGS[i % 3], PROFILES[(i // 3) % 3])
    for i, (fault, snr) in enumerate(itertools.product(FAULT_CLASSES, (-5.0, 0.0, 5.0, 10.0)))
]


@pytest.mark.parametrize(("fault", "snr_db", "bearing", "profile"), CLEAN_CASES)
def test_clean_windows_raise_nothing(fault, snr_db, bearing, profile):
    spec = _spec(fault, snr_db, bearing, profile)
    x, baseline = _window_and_baseline(spec, seed=int(snr_db) + 11)
    verdict = check(x, FS, _expect(spec, baseline))[0]
    assert verdict.ok and verdict.faults == () and verdict.detail == ""


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("rpm", [1.0, 2.0])
def test_slow_ring_runout_is_not_an_offset_or_drift(rpm, profile):
    # at 1-2 rpm the shaft 1x spans less than a window: it looks like an offset or a trend
    spec = SimulationSpec(fault="healthy", snr_db=12.0, rpm=rpm, window_seconds=20.0,
                          speed_profile=profile, sample_rate_hz=FS)
    x, baseline = _window_and_baseline(spec, seed=int(rpm))
    verdict = check(x, FS, _expect(spec, baseline))[0]
    assert verdict.ok and verdict.faults == () and verdict.detail == ""


def _inject(name, x, rng):
    """The window with one data-quality fault injected; also the sample rate to report."""
    sigma = x.std()
    y = x.copy()
    n = len(y)
    if name == "out_of_range":
        y[n // 2] = 3e38
    elif name == "flat_line":
        y[:] = 0.25
    elif name == "clipping":
        rail = 0.5 * np.abs(y).max()
        y = np.clip(y, -rail, rail)
    elif name == "spikes":
        y[rng.choice(n, 3, replace=False)] += 40 * sigma
    elif name == "dropout":
        y[n // 3 : n // 3 + int(0.1 * FS)] = 0.0
    elif name == "dc_offset":
        y += 3 * sigma
    elif name == "drift":
        y += np.linspace(-3 * sigma, 3 * sigma, n)
    elif name == "loose_mount":
        y += 4 * sigma * rng.standard_normal(n)
    return y, 4800.0 if name == "sample_rate_mismatch" else FS


BASES = [("healthy", 0.0, "constant"), ("outer_race", 10.0, "oscillating"),
         ("inner_race", -5.0, "stop_start"), ("combined", 5.0, "constant")]


@pytest.mark.parametrize("name", [f for f in QUALITY_FAULTS if f != "rpm_mismatch"])
@pytest.mark.parametrize(("fault", "snr_db", "profile"), BASES)
def test_each_injected_fault_is_named(name, fault, snr_db, profile):
    spec = _spec(fault, snr_db, profile=profile)
    x, baseline = _window_and_baseline(spec)
    y, fs = _inject(name, x, np.random.default_rng(5))
    verdict = check(y, fs, _expect(spec, baseline))[0]
    assert verdict.faults == (name,), verdict.detail
    assert not verdict.ok and name in verdict.detail


@pytest.mark.parametrize(("true_rpm", "bearing", "expect"), [
    (6.3, "slew-4pc-1000", ("rpm_mismatch",)),   # configured 6.0: 5 % off
    (5.7, "slew-xr-1000", ("rpm_mismatch",)),
    (6.06, "slew-4pc-1000", ()),                  # 1 %: within tolerance
])
def test_rpm_mismatch_from_the_gear_mesh_line(true_rpm, bearing, expect):
    spec = _spec("outer_race", 0.0, bearing, rpm=true_rpm)
    x, baseline = _window_and_baseline(spec)
    configured = QualityExpectations(sample_rate_hz=FS, rpm=6.0, order_lines=(MESH_ORDER,),
                                     rms=baseline)
    verdict = check(x, FS, configured)[0]
    assert verdict.faults == expect, verdict.detail


@pytest.mark.parametrize(("factor", "expect"),
                         [(1.05, ("rpm_mismatch",)), (0.95, ("rpm_mismatch",)), (1.0, ())])
def test_rpm_trace_off_by_a_factor_is_caught_on_the_angle_axis(factor, expect):
    sim = simulate(_spec("inner_race", 0.0, profile="stop_start"), n_windows=2, seed=6)
    configured = sim.rpm_trace * np.float32(factor)  # an encoder scaled wrong
    exp = QualityExpectations(sample_rate_hz=FS, order_lines=(MESH_ORDER,))
    verdicts = check(sim.windows, FS, exp, rpm_trace=configured)
    assert [v.faults for v in verdicts] == [expect, expect], [v.detail for v in verdicts]


def test_reversing_trace_is_not_judged():
    sim = simulate(_spec("healthy", 5.0, profile="oscillating"), n_windows=2, seed=6)
    exp = QualityExpectations(order_lines=(MESH_ORDER,))
    assert all(v.ok for v in check(sim.windows, FS, exp, rpm_trace=sim.rpm_trace * 1.05))


def test_rpm_check_skipped_when_speed_varies_or_no_line_is_known():
    spec = _spec("healthy", 0.0, rpm=6.6)
    x, _ = _window_and_baseline(spec)
    varying = QualityExpectations(rpm=6.0, order_lines=(MESH_ORDER,), constant_speed=False)
    assert check(x, FS, varying)[0].ok
    assert check(x, FS, QualityExpectations(rpm=6.0))[0].ok


def test_batch_matches_one_by_one_and_keeps_order():
    spec = _spec("healthy", 0.0)
    sim = simulate(spec, n_windows=3, seed=2)
    x = sim.windows.astype(np.float64)
    x[1, 100:600] = 0.0
    x[2] = np.clip(x[2], -0.3, 0.3)
    batch = check(x, FS)
    assert [v.faults for v in batch] == [(), ("dropout",), ("clipping",)]
    assert [check(row, FS)[0] for row in x] == batch


def test_loose_mount_needs_a_rise_and_no_impulses():
    x, baseline = _window_and_baseline(_spec("healthy", 0.0))
    exp = QualityExpectations(rms=baseline)
    rng = np.random.default_rng(0)
    impulsive = x + 3 * x.std() * rng.standard_normal(len(x)) ** 5 / 10  # heavy-tailed rise
    assert "loose_mount" not in check(impulsive, FS, exp)[0].faults
    assert check(x * 1.5, FS, exp)[0].ok  # +3.5 dB: below the +6 dB rise
    assert check(x + 3 * x.std() * rng.standard_normal(len(x)), FS)[0].ok  # no baseline known


def test_stricter_thresholds_change_the_verdict():
    x, _ = _window_and_baseline(_spec("healthy", 0.0))
    y = x + 0.6 * x.std()
    assert check(y, FS)[0].ok
    assert check(y, FS, thresholds=QualityThresholds(dc_max_ratio=0.3))[0].faults == ("dc_offset",)


def test_spectral_flatness_and_line_frequency():
    rng = np.random.default_rng(0)
    t = np.arange(80000) / FS
    tone = np.sin(2 * np.pi * 12.6 * t) + 0.01 * rng.standard_normal(len(t))
    assert spectral_flatness(rng.standard_normal((1, 80000)), FS)[0] > 0.8
    assert spectral_flatness(tone[None], FS)[0] < 0.1
    freq, prominence = line_frequency_hz(tone[None], FS, 12.0, 0.1)
    assert abs(freq[0] - 12.6) < 0.02 and prominence[0] > 30


def test_rpm_trace_must_have_a_row_per_window():
    x = np.random.default_rng(0).normal(size=(3, 5000))
    with pytest.raises(ValueError, match=r"rpm_trace has shape \(2, 5000\) for 3 windows"):
        check(x, FS, rpm_trace=np.full((2, 5000), 6.0))


@pytest.mark.parametrize(("windows", "rate", "needle"), [
    (np.zeros((2, 10)), FS, "N >= 64"),
    (np.full((1, 100), np.nan), FS, "NaN"),
    (np.zeros((1, 100)), -1.0, "sample_rate_hz=-1.0"),
])
def test_bad_input_raises_value_error(windows, rate, needle):
    with pytest.raises(ValueError, match=needle):
        check(windows, rate)


def _cwru_dir():
    import os
    from pathlib import Path

    default = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cwru"
    return Path(os.environ.get("SLEWGUARD_CWRU_DIR", default))


@pytest.mark.skipif(not (_cwru_dir() / "MANIFEST.tsv").is_file(),
                    reason="CWRU data absent (set SLEWGUARD_CWRU_DIR or ../shared/data/cwru)")
def test_real_cwru_windows_are_clean_and_a_wrong_rpm_is_caught():
    from slewguard.signal.cwru import load_cwru

    test = load_cwru(_cwru_dir(), protocol="paper-4class").test
    caught = []
    for rpm in np.unique(test.rpm):
        windows = test.windows[test.rpm == rpm]
        right = QualityExpectations(sample_rate_hz=12000.0, rpm=float(rpm), order_lines=(1.0,))
        assert all(v.ok for v in check(windows, 12000.0, right))
        wrong = right.model_copy(update={"rpm": float(rpm) * 1.05})
        faults = [v.faults for v in check(windows, 12000.0, wrong)]
        assert set(faults) <= {(), ("rpm_mismatch",)}
        caught += [f == ("rpm_mismatch",) for f in faults]
    # The 1x line of a 1 s CWRU window is not always prominent; where it is, it must be caught.
    assert np.mean(caught) > 0.5


def test_row_statistics_match_float64_references_even_on_a_large_offset():
    from slewguard.signal.quality_waveform import row_stats

    rng = np.random.default_rng(3)
    n = 100_003  # blocks of the row pass do not divide it
    t = np.linspace(-0.5, 0.5, n)
    x = rng.normal(size=(3, n)) + np.array([[0.0], [500.0], [2.0]]) + np.outer([0, 0, 4], t)
    stats = row_stats(x.astype(np.float32))
    ref = x.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(stats.mean, ref.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(stats.rms, ref.std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(stats.slope, [np.polyfit(t, r, 1)[0] for r in ref], atol=1e-4)
    assert (stats.hi == ref.max(axis=1)).all() and (stats.lo == ref.min(axis=1)).all()


def test_a_batch_gives_each_window_its_own_verdict_across_chunks():
    # more windows than one call of the checks takes, faults in different chunks
    rng = np.random.default_rng(4)
    x = rng.normal(size=(11, 20000)).astype(np.float32)
    x[1, 777] = 60.0  # spike
    x[6] += 5.0  # offset
    x[9, 3000:3300] = x[9, 2999]  # dropout
    x[10] = np.clip(x[10], -1.0, 1.0)  # clipping
    batch = [v.faults for v in check(x, FS)]
    assert batch == [check(row, FS)[0].faults for row in x]
    assert [i for i, f in enumerate(batch) if f] == [1, 6, 9, 10]
    assert batch[1] == ("spikes",) and batch[6] == ("dc_offset",)
    with pytest.raises(ValueError, match="NaN/inf"):
        check(np.where(np.arange(20000) == 5, np.nan, x[0]), FS)


def test_a_list_of_windows_gets_the_verdicts_of_the_stacked_batch():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 20000)).astype(np.float32)
    x[2, 100] = 80.0
    x[5] = np.clip(x[5], -1.0, 1.0)
    assert [v.faults for v in check(list(x), FS)] == [v.faults for v in check(x, FS)]
    with pytest.raises(ValueError, match="one length"):
        check([x[0], x[1, :1000]], FS)


@pytest.mark.parametrize("make", [
    lambda rng: rng.choice(np.float32([-3e38, 3e38]), 20000),  # the float32 rails
    lambda rng: (rng.normal(size=20000) * 1e37).astype(np.float32),  # passed as ok before
    lambda rng: np.where(np.arange(20000) % 7 == 0, np.float32(-3.4e38),
                         rng.normal(size=20000).astype(np.float32)),
])
def test_float_rail_samples_are_out_of_range_without_overflow_warnings(make):
    x = make(np.random.default_rng(0))
    clean = np.random.default_rng(1).normal(size=20000).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in the statistics
        verdicts = check(np.stack([clean, x, clean, clean, clean]), FS)
    assert verdicts[1].faults == ("out_of_range",) and not verdicts[1].ok
    assert re.match(r"out_of_range: peak [\d.]+e\+3[78] beyond", verdicts[1].detail)
    assert "corrupt" in verdicts[1].detail
    assert all(v.ok for i, v in enumerate(verdicts) if i != 1)


def test_large_but_plausible_values_are_in_range():
    x = np.random.default_rng(0).normal(size=20000) * 2e9  # int32 ADC counts
    assert check(x, FS)[0].faults == ()
