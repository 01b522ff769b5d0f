import math

import numpy as np
import pytest
from scipy.signal import hilbert

from slewguard.signal import simulate as sim_module
from slewguard.signal.kinematics import FAULT_LINE, preset
from slewguard.signal.scenario import FAULT_CLASSES, FAULT_TRAINS, SimulationSpec
from slewguard.signal.simulate import (
    N_UNIFORM,
    impulse_train,
    shaft_revolutions,
    simulate,
    speed_trace,
)

# Small and fast: 1 kHz, gear and shaft content off unless a test wants it.
QUIET = {"gear": {"mesh_amplitude": 0.0, "shaft_amplitude": 0.0}, "snr_db": None}


def small_spec(**overrides) -> SimulationSpec:
    base = {"rpm": 12.0, "sample_rate_hz": 1000.0, "window_seconds": 20.0}
    return SimulationSpec(**{**base, **overrides})


def squared_envelope_spectrum(x: np.ndarray, fs: float, pad: int = 8):
    env = np.abs(hilbert(x.astype(np.float64))) ** 2
    env -= env.mean()
    amp = np.abs(np.fft.rfft(env, pad * len(env))) / len(env)
    return np.fft.rfftfreq(pad * len(env), 1 / fs), amp


def level_near(freqs, amp, f_hz, tol_hz):
    return amp[np.abs(freqs - f_hz) <= tol_hz].max()


def test_fault_classes_match_interface_order():
    assert FAULT_CLASSES == (
        "healthy",
        "inner_race",
        "outer_race",
        "rolling_element",
        "cage",
        "combined",
    )
    assert set(FAULT_TRAINS) == set(FAULT_CLASSES)
    for fault, line in FAULT_LINE.items():  # each single fault rings its kinematics line
        assert FAULT_TRAINS[fault] == (line,)


def test_same_seed_same_windows_other_seed_differs():
    spec = small_spec(fault="inner_race")
    a, b, c = simulate(spec, 2, seed=3), simulate(spec, 2, seed=3), simulate(spec, 2, seed=4)
    np.testing.assert_array_equal(a.windows, b.windows)
    assert not np.allclose(a.windows, c.windows)
    assert not np.allclose(a.windows[0], a.windows[1])  # windows of one batch differ too


def test_window_does_not_depend_on_batch_size_or_chunking(monkeypatch):
    spec = small_spec(fault="outer_race", speed_profile="oscillating")
    one = simulate(spec, 1, seed=9)
    monkeypatch.setattr(sim_module, "CHUNK_SAMPLES", 1)  # one window per chunk
    three = simulate(spec, 3, seed=9)
    np.testing.assert_array_equal(one.windows[0], three.windows[0])
    np.testing.assert_array_equal(one.rpm_trace[0], three.rpm_trace[0])


@pytest.mark.parametrize("profile", ["constant", "oscillating", "stop_start"])
def test_shapes_and_dtypes(profile):
    spec = small_spec(fault="combined", speed_profile=profile, window_seconds=10.0)
    out = simulate(spec, 3, seed=0)
    assert out.windows.shape == (3, 10_000) and out.windows.dtype == np.float32
    assert out.rpm.shape == (3,) and out.rpm.dtype == np.float64
    assert out.spec is spec
    assert np.isfinite(out.windows).all()
    if profile == "constant":
        assert out.rpm_trace is None
        np.testing.assert_array_equal(out.rpm, 12.0)
    else:
        assert out.rpm_trace.shape == (3, 10_000) and out.rpm_trace.dtype == np.float32
        np.testing.assert_allclose(out.rpm, np.abs(out.rpm_trace).mean(axis=1), rtol=1e-5)


@pytest.mark.parametrize("snr_db", [-5.0, 10.0, 25.0])
@pytest.mark.parametrize("fault", ["healthy", "inner_race"])
def test_noise_is_at_the_requested_snr_of_the_clean_signal(snr_db, fault):
    spec = small_spec(fault=fault, snr_db=snr_db, snr_reference="clean")
    noisy = simulate(spec, 2, seed=5).windows.astype(float)
    clean = simulate(small_spec(fault=fault, snr_db=None), 2, seed=5).windows.astype(float)
    noise = noisy - clean
    measured = 10 * np.log10(np.mean(clean**2, axis=1) / np.mean(noise**2, axis=1))
    np.testing.assert_allclose(measured, snr_db, atol=0.5)
    assert abs(np.mean(noise)) < 0.05 * np.std(noise)


@pytest.mark.parametrize("snr_db", [-5.0, 10.0])
def test_impact_snr_refers_to_an_outer_race_train_whatever_the_class(snr_db):
    quiet = {"gear": {"mesh_amplitude": 0.0, "shaft_amplitude": 0.0}}
    outer = simulate(small_spec(fault="outer_race", snr_db=None, **quiet), 4, seed=5).windows
    impact_power = np.mean(outer.astype(float) ** 2)
    noise_power = {}
    for fault in ("healthy", "inner_race", "outer_race"):
        for severity in (0.5, 2.0):
            spec = small_spec(fault=fault, snr_db=snr_db, severity=severity)
            noisy = simulate(spec, 2, seed=5).windows.astype(float)
            clean = simulate(spec.model_copy(update={"snr_db": None}), 2, seed=5).windows
            noise_power[fault, severity] = np.mean((noisy - clean) ** 2)
    measured = 10 * np.log10(impact_power / np.array(list(noise_power.values())))
    np.testing.assert_allclose(measured, snr_db, atol=0.3)  # same noise for every class


@pytest.mark.parametrize("fault", ["inner_race", "outer_race", "rolling_element", "cage"])
def test_impacts_per_second_match_the_defect_frequency(fault):
    # Count impacts on the sample grid over a long window (cage impacts are rare).
    spec = small_spec(fault=fault, window_seconds=600.0, impacts={"amplitude_spread": 0.0})
    line_hz = preset(spec.bearing).frequencies(spec.rpm).as_dict()[FAULT_LINE[fault]]
    t = np.arange(spec.n_samples) / spec.sample_rate_hz
    rev = (spec.rpm / 60 * t)[None, :]
    train = impulse_train(spec, rev, None, np.full((1, N_UNIFORM), 0.5), [np.random.default_rng(0)])
    per_second = np.count_nonzero(train) / spec.window_seconds
    assert per_second == pytest.approx(line_hz, rel=0.02)


def test_reversing_speed_counts_impacts_over_the_distance_rolled():
    spec = small_spec(fault="outer_race", speed_profile="oscillating", window_seconds=100.0)
    t = np.arange(spec.n_samples) / spec.sample_rate_hz
    trace = speed_trace(spec, t, np.array([0.3]))
    rolled_rev = np.abs(trace).sum() / 60 / spec.sample_rate_hz
    rev = shaft_revolutions(trace, spec.sample_rate_hz)
    train = impulse_train(
        spec, rev, trace, np.full((1, N_UNIFORM), 0.5), [np.random.default_rng(1)]
    )
    expected = preset(spec.bearing).orders().bpfo_hz * rolled_rev
    assert np.count_nonzero(train) == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("fault", ["inner_race", "outer_race", "rolling_element", "cage"])
def test_envelope_spectrum_peaks_at_the_defect_line(fault):
    # CWRU bearing at 1800 rpm: lines of 12-162 Hz, a 4 s window holds enough of each.
    spec = SimulationSpec(
        fault=fault,
        bearing="cwru-6205",
        rpm=1800.0,
        sample_rate_hz=12_000.0,
        window_seconds=4.0,
        snr_db=0.0,
    )
    x = simulate(spec, 1, seed=2).windows[0]
    line_hz = preset("cwru-6205").frequencies(1800.0).as_dict()[FAULT_LINE[fault]]
    freqs, amp = squared_envelope_spectrum(x, spec.sample_rate_hz)
    band = (freqs > 0.5 * line_hz) & (freqs < 1.5 * line_hz)
    assert freqs[band][np.argmax(amp[band])] == pytest.approx(line_hz, rel=0.02)


def sideband_ratio(fault: str, line: str) -> float:
    spec = small_spec(fault=fault, window_seconds=60.0, **QUIET)
    x = simulate(spec, 1, seed=4).windows[0]
    f = preset(spec.bearing).frequencies(spec.rpm)
    freqs, amp = squared_envelope_spectrum(x, spec.sample_rate_hz)
    tol = 1.5 / spec.window_seconds
    carrier = level_near(freqs, amp, getattr(f, line), tol)
    sides = [level_near(freqs, amp, getattr(f, line) + s * f.shaft_hz, tol) for s in (-1, 1)]
    return float(np.mean(sides) / carrier)


def test_inner_race_is_modulated_at_shaft_rate_outer_race_is_not():
    inner = sideband_ratio("inner_race", "bpfi_hz")
    outer = sideband_ratio("outer_race", "bpfo_hz")
    assert inner > 0.3  # q = 0.6 + 0.4 cos: squared-envelope sidebands at ~0.55 of the line
    assert outer < 0.1


def test_rolling_element_is_modulated_at_cage_rate():
    spec = small_spec(fault="rolling_element", rpm=12.0, window_seconds=120.0, **QUIET)
    x = simulate(spec, 1, seed=6).windows[0]
    f = preset(spec.bearing).frequencies(spec.rpm)
    freqs, amp = squared_envelope_spectrum(x, spec.sample_rate_hz, pad=4)
    tol = 1.5 / spec.window_seconds
    carrier = level_near(freqs, amp, f.bsf2_hz, tol)
    side = level_near(freqs, amp, f.bsf2_hz + f.ftf_hz, tol)
    assert side > 0.3 * carrier


def test_gear_mesh_line_and_sidebands_in_the_spectrum():
    spec = small_spec(fault="healthy", snr_db=None, gear={"ring_teeth": 50, "shaft_amplitude": 0})
    x = simulate(spec, 1, seed=0).windows[0]
    amp = np.abs(np.fft.rfft(x)) / len(x)
    freqs = np.fft.rfftfreq(len(x), 1 / spec.sample_rate_hz)
    fr = spec.rpm / 60
    mesh = level_near(freqs, amp, 50 * fr, 0.06)
    assert mesh == pytest.approx(0.15, rel=0.1)  # amplitude 0.3 shows as 0.3/2 in a one-sided FFT
    assert level_near(freqs, amp, 50 * fr + fr, 0.06) > 0.1 * mesh
    assert level_near(freqs, amp, 10 * fr + 0.5 * fr, 0.06) < 0.01 * mesh


def test_oscillating_profile_reverses_and_keeps_mean_speed():
    spec = small_spec(speed_profile="oscillating", speed_period_seconds=5.0)
    out = simulate(spec, 2, seed=1)
    assert (out.rpm_trace.min(axis=1) < 0).all() and (out.rpm_trace.max(axis=1) > 0).all()
    sign_changes = np.count_nonzero(np.diff(np.sign(out.rpm_trace[0])))
    assert sign_changes == pytest.approx(2 * 20.0 / 5.0, abs=1)
    np.testing.assert_allclose(out.rpm, 12.0, rtol=0.01)  # whole periods: mean |rpm| is spec.rpm


def test_stop_start_profile_stands_still_and_peaks_above_mean():
    spec = small_spec(speed_profile="stop_start", speed_period_seconds=5.0)
    trace = simulate(spec, 1, seed=1).rpm_trace[0]
    assert trace.min() == 0.0
    assert np.mean(trace == 0) == pytest.approx(0.25, abs=0.02)
    assert trace.max() == pytest.approx(12.0 / 0.6, rel=1e-4)


def test_no_impacts_while_the_shaft_stands_still():
    spec = small_spec(fault="inner_race", speed_profile="stop_start", window_seconds=60.0)
    t = np.arange(spec.n_samples) / spec.sample_rate_hz
    trace = speed_trace(spec, t, np.array([0.1]))
    rev = shaft_revolutions(trace, spec.sample_rate_hz)
    uniforms = np.full((1, N_UNIFORM), 0.5)
    train = impulse_train(spec, rev, trace, uniforms, [np.random.default_rng(2)])[0]
    impacts = np.nonzero(train)[0]
    assert len(impacts) > 100
    assert np.mean(trace[0, impacts] == 0) < 0.02  # only slip jitter can push one into standstill


def test_severity_zero_is_exactly_healthy_and_severity_scales_impulses():
    healthy = simulate(small_spec(fault="healthy"), 2, seed=8).windows
    zero = simulate(small_spec(fault="inner_race", severity=0.0), 2, seed=8).windows
    np.testing.assert_array_equal(zero, healthy)
    one = simulate(small_spec(fault="inner_race", severity=1.0, **QUIET), 1, seed=8).windows
    two = simulate(small_spec(fault="inner_race", severity=2.0, **QUIET), 1, seed=8).windows
    assert np.abs(one).max() > 0.3
    np.testing.assert_allclose(two, 2 * one, rtol=1e-5, atol=1e-6)


def line_prominence_db(spec: SimulationSpec, line_hz: float) -> float:
    x = simulate(spec, 1, seed=0).windows[0]
    freqs, amp = squared_envelope_spectrum(x, spec.sample_rate_hz, pad=1)
    band = (freqs > 0.5 * line_hz) & (freqs < 2 * line_hz)
    return 20 * np.log10(level_near(freqs, amp, line_hz, 0.07) / np.median(amp[band]))


def test_default_fault_stands_out_at_default_snr_healthy_does_not():
    bpfo_hz = preset("slew-4pc-1000").frequencies(6.0).bpfo_hz
    assert line_prominence_db(SimulationSpec(fault="outer_race"), bpfo_hz) > 15
    assert line_prominence_db(SimulationSpec(fault="healthy"), bpfo_hz) < 10


def test_spec_is_frozen_and_forbids_unknown_keys():
    spec = small_spec()
    with pytest.raises(ValueError, match="frozen"):
        spec.rpm = 3.0
    with pytest.raises(ValueError, match="rmp"):
        SimulationSpec(rmp=3.0)
    with pytest.raises(ValueError, match="teeth"):
        SimulationSpec(gear={"teeth": 3})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"fault": "spall"}, r"fault='spall'.*inner_race"),
        ({"bearing": "nope"}, r"bearing='nope'.*slew-4pc-1000"),
        ({"sample_rate_hz": 500.0}, r"sample_rate_hz=500.0 must be in \[1000, 50000\]"),
        ({"sample_rate_hz": 60_000.0}, r"sample_rate_hz=60000.0"),
        ({"rpm": 0.0}, r"rpm\n.*greater than 0.*input_value=0.0"),
        ({"rpm": math.nan}, r"rpm\n.*finite"),
        ({"snr_db": math.nan}, r"snr_db\n.*finite"),
        ({"window_seconds": math.inf}, r"window_seconds\n.*finite"),
        ({"fault": "cage", "window_seconds": 30.0}, r"window_seconds >= 61\.\d"),
        ({"fault": "outer_race", "rpm": 1.0, "window_seconds": 3.0}, r"window_seconds >= 4\.\d"),
        ({"speed_profile": "stop_start", "speed_period_seconds": 200.0}, r"standstill"),
        ({"resonance": {"frequencies_hz": (800.0, 2600.0)}}, r"2600.0 Hz.*Nyquist"),
        ({"resonance": {"gains": (1.0, 0.5)}}, r"one gain per resonance"),
        ({"speed_profile": "wobble"}, r"(?s)speed_profile.*oscillating"),
        ({"severity": -1.0}, r"severity"),
        ({"gear": {"mesh_amplitude": 0.0, "shaft_amplitude": 0.0}, "snr_reference": "clean"},
         r"snr_db=None"),
        ({"snr_reference": "window"}, r"snr_reference"),
    ],
)
def test_bad_spec_raises_value_error_naming_parameter_and_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimulationSpec(**kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n_windows": 0}, r"n_windows=0"),
        ({"n_windows": 2.5}, r"n_windows=2.5"),
        ({"seed": -1}, r"seed=-1"),
    ],
)
def test_bad_call_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(small_spec(), **kwargs)


def test_window_length_rule_accepts_the_length_it_asks_for():
    with pytest.raises(ValueError, match=r"window_seconds >= (\d+\.\d)") as err:
        SimulationSpec(fault="cage", window_seconds=30.0)
    needed = float(str(err.value).split("window_seconds >= ")[1].split()[0])
    SimulationSpec(fault="cage", window_seconds=needed + 0.1)
