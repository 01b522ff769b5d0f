"""Physically based vibration windows of a slewing bearing, healthy or with a localised fault.

The fault model (McFadden & Smith 1984; Antoni & Randall 2003), per window:

    x(t) = sum_i A_i q(t_i) h(t - t_i) + g(t) + n(t)

- t_i: where the integrated shaft angle times the line's order (BPFI, BPFO, 2 x BSF or FTF)
  crosses a whole number, either way (any speed profile, reversal included), plus a slip jitter
  of ``impacts.slip_jitter`` x the local impact period (not accumulated).
- A_i = severity x (1 + spread x N(0, 1)); severity 0 gives no impulses at all.
- q: load-zone modulation 1 - depth (1 - cos(angle)) / 2 at the shaft angle (inner race) or the
  cage angle (rolling element); 1 for the outer race (stationary, in the load zone) and the cage.
- h: decaying structural resonances sum_k g_k sin(2 pi fn_k t) exp(-zeta 2 pi fn_k t), peak 1.
- g: gear mesh (ring_teeth x shaft rate, harmonics, amplitude-modulated at shaft rate, which puts
  sidebands at mesh +- fr) plus shaft harmonics; all scale with |speed| and vanish at standstill.
- n: white Gaussian noise at ``snr_db``. With ``snr_reference="impacts"`` (default) the signal
  power is that of a severity-1 outer-race impact train of this bearing at this speed,
  (1 + spread^2) x BPFO x sum(h^2) / fs: the same noise for every class and severity (a label
  cannot leak through the noise level), and the SNR of the evidence envelope analysis works on.
  ``"clean"`` refers to each window's clean power (impulses + g); at slewing speeds the gear mesh
  is 16-21 dB stronger than the impacts, so that SNR says little about the fault.

"combined" is inner race + outer race (both trains, same severity). Amplitudes are in units of
the peak of one severity-1 impact. Each window draws from its own child of ``SeedSequence(seed)``
(window i does not depend on ``n_windows``), noise from a separate stream (same seed with
``snr_db=None`` gives the exact clean signal).

Example:
    >>> spec = SimulationSpec(fault="outer_race", rpm=6.0, window_seconds=10.0)
    >>> sim = simulate(spec, n_windows=2, seed=1)
    >>> sim.windows.shape, sim.windows.dtype.name
    ((2, 50000), 'float32')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import oaconvolve

from slewguard.signal.scenario import FAULT_TRAINS, STOP_START_PHASE, SimulationSpec

# Which rotation carries a line's defect through the load zone (None: no modulation).
LOAD_ZONE_CARRIER = {"bpfi_hz": "shaft_hz", "bsf2_hz": "ftf_hz", "bpfo_hz": None, "ftf_hz": None}
ANTI_ALIAS_FRACTION = 0.45  # sinusoids above this x sample rate are removed, like a sensor's filter
STOP_START_LEVEL = (0.0, 1.0, 1.0, 0.0, 0.0)
CHUNK_SAMPLES = 1 << 18  # windows go in chunks of about this many samples (cache-friendly)
# Layout of the uniform draws each window makes up front.
N_UNIFORM, U_PROFILE, U_MESH, U_SIDEBAND, U_SHAFT, U_START, U_LOAD = 16, 0, 1, 6, 7, 12, 14


@dataclass
class Simulated:
    """A batch of simulated windows.

    windows: (B, N) float32; rpm: (B,) float64 mean |rpm| per window; rpm_trace: (B, N) float32
    signed shaft speed in rpm, or None for constant speed.
    """

    windows: np.ndarray
    rpm: np.ndarray
    rpm_trace: np.ndarray | None
    spec: SimulationSpec


def speed_trace(spec: SimulationSpec, t: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Signed shaft speed in rpm, (C, N) float32, at times ``t`` (N,) s; cycle offsets (C,).

    The oscillating profile is a sine through zero (reversal); stop-start ramps between standstill
    and ``peak_rpm()``. Both are scaled so the mean |speed| over whole cycles is ``spec.rpm``.

    Example:
        >>> spec = SimulationSpec(speed_profile="oscillating", speed_period_seconds=4.0)
        >>> trace = speed_trace(spec, np.linspace(0, 4, 4001), np.zeros(1))
        >>> round(float(np.abs(trace).mean()), 2), bool(trace.min() < 0 < trace.max())
        (6.0, True)
    """
    cycles = t[None, :] / spec.speed_period_seconds + offsets[:, None]  # (C, N)
    if spec.speed_profile == "constant":
        return np.full(cycles.shape, spec.rpm, np.float32)
    if spec.speed_profile == "oscillating":
        return np.float32(spec.peak_rpm()) * _cos_cycles(cycles - 0.25)
    level = np.interp(cycles - np.floor(cycles), STOP_START_PHASE, STOP_START_LEVEL)
    return (spec.peak_rpm() * level).astype(np.float32)


def shaft_revolutions(rpm_trace: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """Integrated shaft angle in revolutions (float64, same shape as ``rpm_trace``).

    Example:
        >>> float(shaft_revolutions(np.full((1, 1000), 60.0), 1000.0)[0, -1])
        1.0
    """
    return np.cumsum(rpm_trace, axis=-1, dtype=np.float64) / (60.0 * sample_rate_hz)


def impact_samples(
    revolutions: np.ndarray, order: float, start_phase: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(window, sample) of every impact: where ``order x revolutions`` crosses a whole number.

    ``revolutions`` is (C, N) or (1, N) for a shared trace; ``start_phase`` (C,) in [0, 1).
    Crossings count in both directions, so a reversal makes the element roll back over the defect.

    Example:
        >>> rev = np.arange(1000)[None, :] / 100.0  # 10 revolutions
        >>> win, idx = impact_samples(rev, 2.0, np.zeros(1))
        >>> len(idx), int(idx[0])
        (19, 50)
    """
    count = np.floor(order * revolutions + start_phase[:, None])
    win, idx = np.nonzero(np.diff(count, axis=-1))
    return win, idx + 1


def impulse_response(spec: SimulationSpec) -> np.ndarray:
    """Sum of decaying resonances, peak |h| = 1, long enough to ring down to 1e-3 (float64).

    Example:
        >>> h = impulse_response(SimulationSpec())
        >>> round(float(np.abs(h).max()), 6), len(h) < 500
        (1.0, True)
    """
    freqs = np.asarray(spec.resonances_hz())
    gains = np.asarray(spec.resonance.gains or [0.7**k for k in range(len(freqs))], float)
    fs = spec.sample_rate_hz
    decay = spec.resonance.damping_ratio * 2 * np.pi * freqs[:, None]  # (K, 1) 1/s
    t = np.arange(math.ceil(math.log(1e3) / decay.min() * fs)) / fs
    h = (gains[:, None] * np.sin(2 * np.pi * freqs[:, None] * t) * np.exp(-decay * t)).sum(0)
    return h / np.abs(h).max()


def load_modulation(
    revolutions: np.ndarray, carrier_order: float | None, depth: float, phase: np.ndarray
) -> np.ndarray:
    """Load-zone factor q in [1 - depth, 1] at each impact's shaft position (revolutions).

    ``carrier_order`` is the order of the rotation that carries the defect through the load zone
    (1 for the shaft, the FTF order for the cage); None means a stationary defect: q = 1.

    Example:
        >>> load_modulation(np.array([0.0, 0.5]), 1.0, 0.8, np.zeros(2)).round(3).tolist()
        [1.0, 0.2]
    """
    if carrier_order is None:
        return np.ones_like(revolutions)
    angle = 2 * np.pi * (carrier_order * revolutions + phase)
    return 1.0 - depth * (1.0 - np.cos(angle)) / 2.0


def impulse_train(
    spec: SimulationSpec,
    revolutions: np.ndarray,
    rpm_trace: np.ndarray | None,
    uniforms: np.ndarray,
    rngs: list[np.random.Generator],
) -> np.ndarray:
    """Impact amplitudes A_i q(t_i) on the sample grid, (C, N) float32, before the resonances ring.

    ``revolutions`` (C, N) or (1, N); ``rpm_trace`` (C, N) or None for constant speed;
    ``uniforms`` (C, N_UNIFORM) per-window phases; ``rngs`` one generator per window.

    Example:
        >>> spec = SimulationSpec(fault="outer_race", severity=2.0, impacts={"amplitude_spread": 0})
        >>> rev = np.arange(spec.n_samples)[None, :] * spec.rpm / 60 / spec.sample_rate_hz
        >>> train = impulse_train(spec, rev, None, np.zeros((1, N_UNIFORM)),
        ...                       [np.random.default_rng(0)])
        >>> int(np.count_nonzero(train)), float(train.max())
        (109, 2.0)
    """
    n_win, n = len(rngs), revolutions.shape[-1]
    train = np.zeros((n_win, n), np.float32)
    if spec.severity == 0:
        return train
    orders = spec.geometry().orders().as_dict()
    revolutions = np.broadcast_to(revolutions, (n_win, n))
    imp = spec.impacts
    for j, line in enumerate(FAULT_TRAINS[spec.fault]):
        order = orders[line] * (1 - imp.slip_fraction)
        win, idx = impact_samples(revolutions, order, uniforms[:, U_START + j])
        carrier_order = orders.get(LOAD_ZONE_CARRIER[line])  # None: stationary defect
        phase = uniforms[win, U_LOAD + j]
        q = load_modulation(revolutions[win, idx], carrier_order, imp.load_zone_depth, phase)
        speed = spec.rpm if rpm_trace is None else np.abs(rpm_trace[win, idx])
        # Local impact period in samples, capped near standstill at twice the mean-speed period.
        period = spec.sample_rate_hz * 60 / (order * np.maximum(speed, spec.rpm / 2))
        # Each window draws its own impacts' normals: window i never depends on the batch size.
        counts = np.bincount(win, minlength=n_win)
        jitter, spread = np.concatenate(
            [rng.standard_normal((2, k)) for rng, k in zip(rngs, counts, strict=True)], axis=1
        )
        idx = idx + np.rint(imp.slip_jitter * period * jitter).astype(np.int64)
        amp = spec.severity * q * np.maximum(0.0, 1 + imp.amplitude_spread * spread)
        keep = (idx >= 0) & (idx < n)
        np.add.at(train, (win[keep], idx[keep]), amp[keep])
    return train


def background(
    spec: SimulationSpec,
    revolutions: np.ndarray,
    speed_ratio: float | np.ndarray,
    uniforms: np.ndarray,
) -> np.ndarray:
    """Gear mesh with shaft-rate sidebands plus shaft harmonics, (C, N) float32.

    Components that would pass ``ANTI_ALIAS_FRACTION`` x sample rate at peak speed are left out.
    ``speed_ratio`` is |rpm(t)| / spec.rpm (1.0 for constant speed).

    Example:
        >>> spec = SimulationSpec(gear={"shaft_amplitude": 0.0, "sideband_depth": 0.0})
        >>> rev = np.arange(1000)[None, :] * spec.rpm / 60 / spec.sample_rate_hz
        >>> background(spec, rev, 1.0, np.zeros((1, N_UNIFORM))).shape
        (1, 1000)
    """
    gear, limit_hz = spec.gear, ANTI_ALIAS_FRACTION * spec.sample_rate_hz
    peak_shaft_hz = spec.peak_rpm() / 60
    u = uniforms[:, :, None]  # (C, N_UNIFORM, 1) phases in cycles
    out = np.zeros((len(uniforms), revolutions.shape[-1]), np.float32)
    for k in range(1, gear.mesh_harmonics + 1):
        if gear.mesh_amplitude == 0 or k * gear.ring_teeth * peak_shaft_hz >= limit_hz:
            break
        mesh = _cos_cycles(k * gear.ring_teeth * revolutions + u[:, U_MESH + k - 1])
        out += np.float32(gear.mesh_amplitude / k) * mesh
    if gear.sideband_depth > 0 and gear.mesh_amplitude > 0:
        out *= 1 + np.float32(gear.sideband_depth) * _cos_cycles(revolutions + u[:, U_SIDEBAND])
    for k in range(1, gear.shaft_harmonics + 1):
        if gear.shaft_amplitude == 0 or k * peak_shaft_hz >= limit_hz:
            break
        shaft = _cos_cycles(k * revolutions + u[:, U_SHAFT + k - 1])
        out += np.float32(gear.shaft_amplitude / k) * shaft
    out *= speed_ratio
    return out


def _cos_cycles(cycles: np.ndarray) -> np.ndarray:
    # cos(2 pi cycles) as float32: reduce to [0, 1) in float64 (phases reach 1e6 cycles), then
    # take the cosine in float32, which numpy vectorises (float64 cos is far slower here).
    frac = np.floor(cycles)
    np.subtract(cycles, frac, out=frac)
    out = frac.astype(np.float32)
    out *= np.float32(2 * np.pi)
    return np.cos(out, out=out)


def add_noise(
    clean: np.ndarray, snr_db: float | None, rngs: list[np.random.Generator],
    reference_power: float | None = None,
) -> np.ndarray:
    """``clean`` (C, N) plus white Gaussian noise at ``snr_db`` per window, as float32.

    The signal power is ``reference_power`` when given, else each window's clean power.

    Example:
        >>> x = add_noise(np.ones((1, 100_000)), 0.0, [np.random.default_rng(0)])
        >>> round(float(np.var(x - 1)), 1)
        1.0
    """
    out = clean.astype(np.float32)
    if snr_db is None:
        return out
    power = (np.mean(np.square(clean), axis=1, dtype=np.float64) if reference_power is None
             else np.full(len(clean), float(reference_power)))
    noise_std = np.sqrt(power / 10 ** (snr_db / 10))
    for row, rng, std in zip(out, rngs, noise_std, strict=True):
        row += np.float32(std) * rng.standard_normal(row.size, dtype=np.float32)
    return out


def _clean_chunk(
    spec: SimulationSpec, h: np.ndarray, rngs: list[np.random.Generator]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Noise-free windows (C, N) float32 and their rpm trace (None for constant speed)."""
    n, fs = spec.n_samples, spec.sample_rate_hz
    uniforms = np.stack([rng.random(N_UNIFORM) for rng in rngs])  # (C, N_UNIFORM)
    t = np.arange(n) / fs
    if spec.speed_profile == "constant":
        trace, ratio = None, 1.0
        revolutions = (spec.rpm / 60 * (t + 1 / fs))[None, :]
    else:
        trace = speed_trace(spec, t, uniforms[:, U_PROFILE])
        revolutions = shaft_revolutions(trace, fs)
        ratio = np.abs(trace) / spec.rpm
    clean = background(spec, revolutions, ratio, uniforms)
    train = impulse_train(spec, revolutions, trace, uniforms, rngs)
    if train.any():
        clean += oaconvolve(train, h.astype(np.float32)[None, :], axes=1)[:, :n]
    return clean, trace


def simulate(spec: SimulationSpec, n_windows: int = 1, seed: int = 0) -> Simulated:
    """Simulate ``n_windows`` windows of ``spec``; deterministic per ``seed``.

    Example:
        >>> spec = SimulationSpec(fault="inner_race", speed_profile="oscillating")
        >>> sim = simulate(spec, n_windows=3, seed=7)
        >>> sim.windows.shape, sim.rpm_trace.shape, sim.rpm.shape
        ((3, 150000), (3, 150000), (3,))
    """
    if isinstance(n_windows, bool) or not isinstance(n_windows, int | np.integer) or n_windows < 1:
        raise ValueError(f"n_windows={n_windows!r} must be a whole number >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a whole number >= 0")
    n = spec.n_samples
    windows = np.empty((n_windows, n), np.float32)
    rpm = np.full(n_windows, spec.rpm)
    trace = None if spec.speed_profile == "constant" else np.empty((n_windows, n), np.float32)
    h = impulse_response(spec)
    reference = spec.reference_power(h) if spec.snr_reference == "impacts" else None
    children = np.random.SeedSequence(int(seed)).spawn(n_windows)
    step = max(1, CHUNK_SAMPLES // n)
    for lo in range(0, n_windows, step):
        streams = [child.spawn(2) for child in children[lo : lo + step]]
        hi = lo + len(streams)
        clean, chunk_trace = _clean_chunk(spec, h, [np.random.default_rng(s) for s, _ in streams])
        windows[lo:hi] = add_noise(
            clean, spec.snr_db, [np.random.default_rng(s) for _, s in streams], reference
        )
        if chunk_trace is not None:
            trace[lo:hi] = chunk_trace
            rpm[lo:hi] = np.abs(chunk_trace).mean(axis=1)
    return Simulated(windows=windows, rpm=rpm, rpm_trace=trace, spec=spec)
