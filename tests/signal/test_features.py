import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest

from slewguard.signal.features import (
    FEATURE_NAMES,
    METHODS,
    FeatureTable,
    envelope_spectrum,
    extract,
)
from slewguard.signal.kinematics import FAULT_LINE, preset
from slewguard.signal.lines import LINE_TOLERANCE, LINES
from slewguard.signal.scenario import SimulationSpec
from slewguard.signal.simulate import simulate

H1 = [FEATURE_NAMES.index(f"env_{line}_h1_db") for line in LINES]
CWRU_DIR = Path(
    os.environ.get(
        "SLEWGUARD_CWRU_DIR",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cwru",
    )
)


def _sim(fault, bearing="slew-4pc-1000", rpm=6.0, fs=5000.0, seconds=30.0, snr_db=10.0, n=2, **kw):
    spec = SimulationSpec(
        fault=fault,
        bearing=bearing,
        rpm=rpm,
        sample_rate_hz=fs,
        window_seconds=seconds,
        snr_db=snr_db,
        **kw,
    )
    return simulate(spec, n_windows=n, seed=7)


def _strongest_line(sim, method="tree"):
    """Name of the strongest h1 defect line per window (by dB over the local floor)."""
    table = extract(
        sim.windows,
        sim.spec.sample_rate_hz,
        preset(sim.spec.bearing),
        rpm=sim.rpm,
        rpm_trace=sim.rpm_trace,
        method=method,
    )
    return [LINES[i] for i in table.values[:, H1].argmax(axis=1)], table


def _peak_frequency_hz(window, fs, row, bearing, rpm):
    """Frequency of the strongest envelope peak inside any defect line's search window."""
    nyquist = fs / 2
    centre, width = row["band_centre_rel"] * nyquist, row["band_width_rel"] * nyquist
    freqs = preset(bearing).frequencies(rpm).as_dict()
    lines_hz = [freqs[f"{line}_hz"] for line in LINES]
    f, amp = envelope_spectrum(
        window,
        fs,
        band_hz=(centre - width / 2, centre + width / 2),
        max_freq_hz=1.1 * max(lines_hz),
    )
    inside = np.zeros_like(f, dtype=bool)
    for line_hz in lines_hz:
        inside |= np.abs(f - line_hz) <= LINE_TOLERANCE * line_hz
    return f[np.flatnonzero(inside)[amp[0, inside].argmax()]]


# Every class at -5 dB (SNR referred to a severity-1 outer-race impact train, the simulator's
# default). Cage faults need CWRU speeds (FTF is 0.05 Hz on a slewing ring at 6 rpm); at 1 s the
# 6205's cage line (12 Hz) and its rolling-element line (whose FTF load-zone modulation puts a line
# at FTF) fail in 1 of 12 windows or more (bench/bench_features_detection.py), so they run at 4 s.
CLASS_CASES = [
    # (fault, bearing, rpm, sample rate, seconds, snr_db)
    ("outer_race", "slew-4pc-1000", 12.0, 5000.0, 30.0, -5.0),
    ("outer_race", "slew-4pc-1000", 6.0, 5000.0, 30.0, -5.0),
    ("inner_race", "slew-4pc-1000", 12.0, 5000.0, 30.0, -5.0),
    ("inner_race", "slew-4pc-1000", 6.0, 5000.0, 30.0, -5.0),
    ("rolling_element", "slew-4pc-1000", 12.0, 5000.0, 30.0, -5.0),
    ("rolling_element", "slew-4pc-1000", 6.0, 5000.0, 30.0, -5.0),
    ("outer_race", "slew-xr-1000", 2.0, 5000.0, 60.0, -5.0),
    ("inner_race", "slew-xr-1000", 2.0, 5000.0, 60.0, -5.0),
    ("rolling_element", "slew-xr-1000", 2.0, 5000.0, 60.0, -5.0),
    ("combined", "slew-4pc-1000", 6.0, 5000.0, 30.0, -5.0),
    ("outer_race", "cwru-6205", 1797.0, 12000.0, 1.0, -5.0),
    ("inner_race", "cwru-6205", 1797.0, 12000.0, 1.0, -5.0),
    ("rolling_element", "cwru-6205", 1797.0, 12000.0, 4.0, -5.0),
    ("cage", "cwru-6205", 1797.0, 12000.0, 4.0, -5.0),
    ("combined", "cwru-6205", 1797.0, 12000.0, 1.0, -5.0),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fault,bearing,rpm,fs,seconds,snr_db", CLASS_CASES)
def test_strongest_defect_peak_is_the_class_line(fault, bearing, rpm, fs, seconds, snr_db, method):
    sim = _sim(fault, bearing, rpm, fs, seconds, snr_db)
    strongest, table = _strongest_line(sim, method)
    lines = ("bpfi_hz", "bpfo_hz") if fault == "combined" else (FAULT_LINE[fault],)
    assert set(strongest) <= {line[: -len("_hz")] for line in lines}, strongest
    lines_hz = [preset(bearing).frequencies(rpm).as_dict()[line] for line in lines]
    for i, window in enumerate(sim.windows):
        peak_hz = _peak_frequency_hz(window, fs, table.row(i), bearing, rpm)
        assert min(abs(peak_hz - f) / f for f in lines_hz) <= 0.02, (peak_hz, lines_hz)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("profile", ["stop_start", "oscillating"])
def test_order_tracking_finds_bpfo_under_varying_speed(profile, method):
    sim = _sim("outer_race", snr_db=10.0, speed_profile=profile)
    assert sim.rpm_trace is not None
    strongest, table = _strongest_line(sim, method)
    assert strongest == ["bpfo"] * len(sim.windows)
    assert (table.values[:, FEATURE_NAMES.index("env_bpfo_h1_db")] > 15).all()


def test_order_tracking_at_constant_speed_matches_the_time_axis():
    sim = _sim("outer_race", "cwru-6205", 1797.0, 12000.0, 1.0, snr_db=0.0)
    windows = sim.windows[:, :11999]  # odd length on purpose
    on_time = extract(windows, 12000.0, preset("cwru-6205"), rpm=1797.0)
    on_angle = extract(windows, 12000.0, preset("cwru-6205"), rpm_trace=np.full_like(windows, 1797))
    np.testing.assert_allclose(on_angle.values[:, H1], on_time.values[:, H1], atol=0.5)
    assert (on_time.values[:, H1[LINES.index("bpfo")]] > 15).all()


@pytest.mark.parametrize("method", METHODS)
def test_healthy_window_has_no_strong_defect_peak(method):
    for bearing, rpm, fs, seconds in (
        ("slew-4pc-1000", 6.0, 5000.0, 30.0),
        ("cwru-6205", 1797.0, 12000.0, 1.0),
    ):
        sim = _sim("healthy", bearing, rpm, fs, seconds, snr_db=0.0, n=3)
        healthy = extract(sim.windows, fs, preset(bearing), rpm=rpm, method=method).values[:, H1]
        assert healthy.max() < 14.0
        outer = extract(
            _sim("outer_race", bearing, rpm, fs, seconds, 0.0).windows, fs, preset(bearing),
            rpm=rpm, method=method,
        ).values[:, H1[LINES.index("bpfo")]]
        assert outer.min() > healthy.max() + 5.0


def test_batch_equals_single_and_table_shape():
    sim = _sim("inner_race", "cwru-6205", 1797.0, 12000.0, 1.0, n=3)
    batch = extract(sim.windows, 12000.0, preset("cwru-6205"), rpm=np.full(3, 1797.0))
    assert isinstance(batch, FeatureTable)
    assert batch.values.shape == (3, len(FEATURE_NAMES)) and batch.values.dtype == np.float32
    assert len(batch) == 3 and list(batch.row(0)) == list(FEATURE_NAMES)
    for i in range(3):
        single = extract(sim.windows[i], 12000.0, preset("cwru-6205"), rpm=1797.0)
        np.testing.assert_allclose(single.values[0], batch.values[i], rtol=1e-5, atol=1e-4)


def _mixed_batch(size, profile="constant"):
    """``size`` CWRU-like 1 s windows of mixed classes, speeds and SNRs (rpm, trace per window)."""
    faults = ("outer_race", "healthy", "inner_race", "rolling_element", "cage", "combined")
    parts = [
        _sim(
            faults[i % len(faults)],
            "cwru-6205",
            900.0 + 97.0 * i,
            12000.0,
            1.0,
            snr_db=-5.0 + 3.0 * (i % 6),
            n=1,
            speed_profile=profile,
            speed_period_seconds=0.5,
        )
        for i in range(size)
    ]
    trace = None if profile == "constant" else np.concatenate([p.rpm_trace for p in parts])
    return np.concatenate([p.windows for p in parts]), np.concatenate([p.rpm for p in parts]), trace


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("profile", ["constant", "oscillating"])
def test_features_of_a_window_do_not_depend_on_its_batch(profile, method):
    windows, rpm, trace = _mixed_batch(16, profile)
    bearing = preset("cwru-6205")

    def features(rows):
        tr = None if trace is None else trace[rows]
        return extract(windows[rows], 12000.0, bearing, rpm=rpm[rows], rpm_trace=tr,
                       method=method).values

    alone = np.concatenate([features([i]) for i in (0, 5)])
    np.testing.assert_allclose(
        features([0, 5, 9]), np.concatenate([alone, features([9])]), rtol=1e-4, atol=1e-3
    )
    np.testing.assert_allclose(features(list(range(16)))[[0, 5]], alone, rtol=1e-4, atol=1e-3)


def test_envelope_spectrum_matches_the_full_rate_squared_envelope():
    """The low-lag shortcut equals the textbook chain: |z|^2 at 2 x band width, Hann, padded FFT."""
    sim = _sim("outer_race", "cwru-6205", 1797.0, 12000.0, 1.0, snr_db=0.0, n=1)
    x, fs, band_hz = sim.windows[0].astype(np.float64), 12000.0, (2000.0, 3500.0)
    f, amp = envelope_spectrum(x, fs, band_hz=band_hz, max_freq_hz=400.0, whiten=False)
    spectrum = np.fft.rfft(x - x.mean())
    bins = spectrum[round(band_hz[0] * len(x) / fs) : round(band_hz[1] * len(x) / fs)]
    env = np.abs(np.fft.ifft(bins, n=2 * len(bins))) ** 2
    env = (env - env.mean()) * np.hanning(len(env))
    ref = np.abs(np.fft.rfft(env, n=4 * len(env)))
    ref = np.interp(f, np.arange(len(ref)) / (4 * len(x) / fs), ref)  # Hz axis, 1 / duration
    ratio_db = 20 * np.log10((amp[0] / amp[0].max()) / (ref / ref.max()))
    strong = ref > 0.05 * ref.max()
    assert strong.sum() > 10 and np.abs(ratio_db[strong]).max() < 0.25
    assert abs(f[amp[0].argmax()] - f[ref.argmax()]) < 0.5


def test_time_statistics_equal_float64_ones_across_blocks():
    from slewguard.signal.features import _centre
    from slewguard.signal.numeric import CACHE_BLOCK

    rng = np.random.default_rng(4)
    x = (rng.normal(size=(3, 2 * CACHE_BLOCK + 777)) * 2 + 5).astype(np.float32)
    x[:, ::997] += 60.0  # impacts: kurtosis and peak far from noise
    out = np.empty_like(x)
    got = _centre(x, out)
    xc = x.astype(np.float64) - x.astype(np.float64).mean(axis=1, keepdims=True)
    rms, peak, mean_abs = np.sqrt((xc**2).mean(1)), np.abs(xc).max(1), np.abs(xc).mean(1)
    want = np.stack([rms, peak, peak / rms, (xc**4).mean(1) / rms**4 - 3,
                     (xc**3).mean(1) / rms**3, rms / mean_abs, peak / mean_abs], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(out, xc, atol=1e-5)
    assert want[:, 3].min() > 10  # the impacts made the kurtosis large


def test_time_features_of_known_signals():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(1, 60_000))
    row = extract(noise, 12000.0, preset("cwru-6205"), rpm=1797.0).row(0)
    assert abs(row["kurtosis"]) < 0.1  # excess kurtosis: 0 for Gaussian noise
    assert abs(row["rms"] - 1.0) < 0.02 and abs(row["skewness"]) < 0.05
    assert abs(row["shape_factor"] - np.sqrt(np.pi / 2)) < 0.01
    spiky = noise.copy()
    spiky[0, ::3000] += 40.0
    spiky_row = extract(spiky, 12000.0, preset("cwru-6205"), rpm=1797.0).row(0)
    assert spiky_row["kurtosis"] > 10 and spiky_row["crest_factor"] > row["crest_factor"] * 2
    band_energy = 10 ** (np.array([row[f"band{i}_db"] for i in range(1, 5)]) / 10)
    assert abs(band_energy.sum() - 1.0) < 1e-3


def _cwru_windows(name):
    if not (CWRU_DIR / "MANIFEST.tsv").exists():
        pytest.skip(f"real CWRU data not found at {CWRU_DIR} (set SLEWGUARD_CWRU_DIR)")
    scipy_io = pytest.importorskip("scipy.io")
    with (CWRU_DIR / "MANIFEST.tsv").open(newline="") as fh:
        meta = {r["file"]: r for r in csv.DictReader(fh, delimiter="\t")}[name]
    signal = scipy_io.loadmat(CWRU_DIR / name)[meta["de_key"]].ravel()
    fs = float(meta["fs_hz_actual"])
    n = int(fs)  # 1 s windows
    return signal[: 4 * n].reshape(4, n), fs, float(meta["rpm"])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "name,line", [("12k_DE_IR_021_0.mat", "bpfi"), ("12k_DE_OR_021_0.mat", "bpfo")]
)
def test_real_cwru_recordings_show_their_defect_line(name, line, method):
    windows, fs, rpm = _cwru_windows(name)
    table = extract(windows, fs, preset("cwru-6205"), rpm=rpm, method=method)
    h1 = table.values[:, H1]
    assert [LINES[i] for i in h1.argmax(axis=1)] == [line] * len(windows)
    assert (h1[:, LINES.index(line)] > 15).all()


BAD_INPUTS = [
    (dict(windows=np.zeros((2, 0))), "windows"),
    (dict(windows=np.array([np.nan] * 12000)), "NaN"),
    (dict(windows=np.ones((2, 3, 4000))), "windows"),
    (dict(rpm=None), "rpm=None"),
    (dict(rpm=0.0), "rpm="),
    (dict(sample_rate_hz=-5.0), "sample_rate_hz=-5"),
    (dict(sample_rate_hz=800.0, windows=np.zeros(800)), "sample_rate_hz=800"),
    (dict(rpm_trace=np.ones((1, 5))), "rpm_trace"),
    (dict(method="fast"), "method='fast'"),
]


@pytest.mark.parametrize("override,message", BAD_INPUTS)
def test_bad_input_raises_value_error_naming_the_parameter(override, message):
    kwargs = dict(
        windows=np.random.default_rng(0).normal(size=12000),
        sample_rate_hz=12000.0,
        bearing=preset("cwru-6205"),
        rpm=1797.0,
    )
    kwargs.update(override)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        extract(**kwargs)


def test_too_short_window_says_how_many_seconds_are_needed():
    x = np.random.default_rng(0).normal(size=5000)  # 1 s at 6 rpm: BSF2 is 2.5 Hz, BPFO 3.6 Hz
    with pytest.raises(ValueError, match=r"at least \d+\.\d s"):
        extract(x, 5000.0, preset("slew-4pc-1000"), rpm=1.0)


def test_a_list_of_windows_gives_the_features_of_the_stacked_batch():
    spec = SimulationSpec(fault="outer_race", bearing="cwru-6205", rpm=1797.0,
                          sample_rate_hz=12000.0, window_seconds=1.0)
    x = simulate(spec, n_windows=3, seed=2).windows.astype(np.float32)
    for method in METHODS:
        stacked = extract(x, 12000.0, preset("cwru-6205"), rpm=1797.0, method=method).values
        listed = extract(list(x), 12000.0, preset("cwru-6205"), rpm=1797.0, method=method)
        np.testing.assert_array_equal(listed.values, stacked)
    with pytest.raises(ValueError, match="one length"):
        extract([x[0], x[1, :500]], 12000.0, preset("cwru-6205"), rpm=1797.0)
    bad = x.copy()
    bad[1, 7] = np.nan
    with pytest.raises(ValueError, match=r"windows \[1\] contain NaN"):
        extract(list(bad), 12000.0, preset("cwru-6205"), rpm=1797.0)


@pytest.mark.parametrize("name,rpm", [("slew-4pc-1000", 6.0), ("slew-4pc-1000", 7.3),
                                      ("slew-4pc-1000", 2.5), ("cwru-6205", 20.0)])
def test_a_window_of_the_quoted_minimum_length_is_accepted(name, rpm):
    bearing, fs = preset(name), 5000.0
    with pytest.raises(ValueError, match="at least") as exc:
        extract(np.random.default_rng(0).normal(size=500), fs, bearing, rpm=rpm)
    need_s = float(re.search(r"at least ([\d.]+) s", str(exc.value)).group(1))
    x = np.random.default_rng(1).normal(size=round(need_s * fs))
    assert extract(x, fs, bearing, rpm=rpm).row(0)["rpm"] == pytest.approx(rpm)


def test_a_window_one_percent_short_of_three_periods_is_accepted_two_percent_is_not():
    bearing, fs, rpm = preset("slew-4pc-1000"), 5000.0, 6.0
    exact_s = 3.0 / (2 * bearing.orders().bsf_hz * rpm / 60.0)  # BSF2 is the slowest line here
    x = np.random.default_rng(0).normal(size=round(0.995 * exact_s * fs))
    extract(x, fs, bearing, rpm=rpm)
    with pytest.raises(ValueError, match=r"holds 2\.9[0-6] periods .* at least 1\.2 s"):
        extract(x[: round(0.98 * exact_s * fs)], fs, bearing, rpm=rpm)


PINNED_NAMES = ("kurtosis", "band1_db", "sk_max", "band_sk", "band_centre_rel", "band_width_rel",
                "env_bpfo_h1_db", "env_bpfi_h1_db", "env_bsf2_h2_db", "env_shaft_db")
PINNED_SPECS = {
    "slew": dict(fault="outer_race", rpm=6.0, sample_rate_hz=5000.0, window_seconds=30.0),
    "slew-oscillating": dict(fault="inner_race", rpm=6.0, sample_rate_hz=5000.0,
                             window_seconds=30.0, speed_profile="oscillating"),
    "cwru": dict(fault="rolling_element", bearing="cwru-6205", rpm=1797.0,
                 sample_rate_hz=12000.0, window_seconds=1.0),
}
# Window 0 of simulate(seed=3) at snr_db=0, computed before the band searches became plug-ins
# (issue 20): a refactor of the feature code must not move a feature.
PINNED_VALUES = {
    ("slew", "tree"): (0.362929, -0.123208, 20.3767, 20.3767, 0.187513, 0.125, 33.6241,
                       0.946775, 6.7739, 0),
    ("slew", "stft"): (0.362929, -0.199507, 55.6374, 55.6374, 0.253906, 0.484375, 31.9325,
                       4.48092, 6.29956, 0),
    ("slew-oscillating", "tree"): (1.74162, -0.0649896, 19.4077, 14.1732, 0.234313, 0.03124,
                                   17.7408, 27.3182, 3.11983, 14.9162),
    ("slew-oscillating", "stft"): (1.74162, -0.121707, 43.5722, 17.6375, 0.234375, 0.015625,
                                   17.3345, 26.3841, 0.152432, 15.5562),
    ("cwru", "tree"): (0.0368922, -4.25321, 0.779437, 0.779437, 0.250167, 0.166667, 3.50822,
                       7.78853, 17.7669, 6.05614),
    ("cwru", "stft"): (0.0368922, -5.40126, 1.29235, 1.0444, 0.25, 0.125, 2.50254, 8.67998,
                       20.2469, 7.47179),
}


@pytest.mark.parametrize("case,method", list(PINNED_VALUES))
def test_features_of_a_fixed_simulated_window_stay_where_they_were(case, method):
    spec = SimulationSpec(snr_db=0.0, **PINNED_SPECS[case])
    sim = simulate(spec, n_windows=2, seed=3)
    row = extract(sim.windows, spec.sample_rate_hz, preset(spec.bearing), rpm=sim.rpm,
                  rpm_trace=sim.rpm_trace, method=method).row(0)
    got = tuple(row[name] for name in PINNED_NAMES)
    assert got == pytest.approx(PINNED_VALUES[case, method], rel=1e-5, abs=1e-5)
