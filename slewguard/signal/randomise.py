"""A simulator that does not teach one rig: every machine draws what varies between machines.

Per machine (``draw_machine``), none of which carries the label:
- bearing geometry (3-40 elements, element/pitch ratio 0.08-0.3, contact angle 0-40 deg);
- shaft speed (300-2000 rpm) and sample rate (8-26 kHz); a speed *label* off by up to
  ``LABEL_ERROR`` (a VFD setpoint, not a tachometer);
- 1-4 structural resonances from 1 kHz to 0.45 x the sample rate, damping 1-12 %, random gains;
- a transfer path (a random band tilt) and sensor gain over 60 dB;
- gear mesh and shaft harmonics at random levels, mains lines (50/60 Hz and harmonics), and
  the whole signal modulated at shaft orders 1-6 (unbalance, misalignment, looseness: lines in
  the envelope spectrum that are not a bearing defect, e.g. 4 x shaft next to a 2 x BSF of 3.99);
- noise: white at a random SNR plus a random share of red (1/f^2) noise;
- impulsive noise that is not periodic at any defect order (random bursts), on healthy windows
  as on faulty ones.
Per window: fault severity (log-uniform, faint to strong), impact timing jitter (a rolling
element's far larger than a race defect's) and a +-1.5 dB operating-level drift.

Every machine gives ``baseline_windows`` healthy commissioning windows first
(``meta["commissioning"] == "1"``), then its labelled windows; ``meta["machine"]`` ties them.

Example:
    >>> sets = randomised_sets(n_machines=2, windows_per_class=1, seed=0)
    >>> [s.counts()["healthy"] for s in sets], [str(s.meta["machine"][0]) for s in sets]
    ([3, 3], ['sim0-m0', 'sim0-m1'])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

from slewguard.signal.datasets import WindowSet, _track
from slewguard.signal.kinematics import BearingGeometry, preset, register
from slewguard.signal.scenario import GearSpec, ImpactSpec, ResonanceSpec, SimulationSpec
from slewguard.signal.simulate import simulate

CLASSES = ("healthy", "inner_race", "outer_race", "rolling_element")
LABEL_ERROR = 0.06  # the speed label is off by up to +-6 %
WINDOW_REVOLUTIONS = (20.0, 50.0)  # a window holds this many shaft turns ...
MAX_SAMPLES = 1 << 16  # ... and at most this many samples
SAMPLE_RATES_HZ = (8000.0, 12000.0, 20000.0, 25600.0)
SEVERITY_LOG10 = (-0.5, 1.5)  # impact amplitude, x the noise reference: faint to +20 dB in level
# Timing jitter of the impacts, x their period: a rolling element skids and spins, so its
# impacts scatter far more than a race defect's and its line is often smeared away
JITTER = {"rolling_element": (0.02, 0.2)}
JITTER_DEFAULT = (0.005, 0.03)


@dataclass(frozen=True)
class Machine:
    """What one simulated machine is, nothing of which depends on the fault."""

    name: str
    bearing: str
    rpm: float
    rpm_label: float
    sample_rate_hz: float
    window_seconds: float
    resonances_hz: tuple[float, ...]
    resonance_gains: tuple[float, ...]
    damping: float
    gear: GearSpec
    snr_db: float
    red_share: float
    gain: float
    tilt_hz: tuple[float, float]
    mains_hz: float
    mains_level: float
    bursts_per_s: float
    shaft_modulation: tuple[float, ...]  # depth of the shaft-order modulation, orders 1..6


def draw_geometry(rng: np.random.Generator, name: str) -> BearingGeometry:
    """A plausible random rolling bearing, registered as a preset of this process."""
    ratio = rng.uniform(0.08, 0.3)
    pitch = rng.uniform(25.0, 400.0)
    most = int(np.pi / ratio * 0.9)
    g = BearingGeometry(name, pitch, ratio * pitch, int(rng.integers(min(6, most), most + 1)),
                        float(rng.choice([0.0, rng.uniform(0, 40)])), "random", "randomise")
    register(g)
    return g


def draw_machine(rng: np.random.Generator, name: str) -> Machine:
    """One machine's nuisance parameters.

    Example:
        >>> m = draw_machine(np.random.default_rng(0), "m0")
        >>> 300 <= m.rpm <= 2000, abs(m.rpm_label / m.rpm - 1) <= LABEL_ERROR
        (True, True)
    """
    g = draw_geometry(rng, f"{name}-bearing")
    fs = float(rng.choice(SAMPLE_RATES_HZ))
    rpm = float(np.exp(rng.uniform(np.log(300), np.log(2000))))
    seconds = min(rng.uniform(*WINDOW_REVOLUTIONS) * 60 / rpm, MAX_SAMPLES / fs)
    k = int(rng.integers(1, 5))
    res = np.sort(rng.uniform(1000.0, 0.45 * fs, k))
    lo = rng.uniform(0.0, 0.3 * fs)
    gear = GearSpec(ring_teeth=int(rng.integers(15, 120)),
                    mesh_amplitude=float(10 ** rng.uniform(-2, 0.5)),
                    mesh_harmonics=int(rng.integers(1, 4)),
                    sideband_depth=float(rng.uniform(0, 0.5)),
                    shaft_amplitude=float(10 ** rng.uniform(-2, 0.7)),
                    shaft_harmonics=int(rng.integers(1, 5)))
    return Machine(
        name=name, bearing=g.name, rpm=rpm,
        rpm_label=rpm * (1 + rng.uniform(-LABEL_ERROR, LABEL_ERROR)), sample_rate_hz=fs,
        window_seconds=float(seconds), resonances_hz=tuple(map(float, res)),
        resonance_gains=tuple(map(float, 10 ** rng.uniform(-1, 0, k))),
        damping=float(rng.uniform(0.01, 0.12)), gear=gear, snr_db=float(rng.uniform(-5, 15)),
        red_share=float(rng.uniform(0, 0.9)), gain=float(10 ** rng.uniform(-3, 3)),
        tilt_hz=(float(lo), float(min(lo + rng.uniform(0.2, 0.5) * fs, 0.49 * fs))),
        mains_hz=float(rng.choice([50.0, 60.0])), mains_level=float(10 ** rng.uniform(-2, 0.5)),
        bursts_per_s=float(rng.choice([0.0, 10 ** rng.uniform(-0.5, 1.3)])),
        shaft_modulation=tuple(map(float, rng.uniform(0, 0.4, 6) * (rng.random(6) < 0.5)
                                   * (rng.random() < 0.7))))


def _severity(rng: np.random.Generator, fault: str) -> float:
    return 0.0 if fault == "healthy" else float(10 ** rng.uniform(*SEVERITY_LOG10))


def machine_window(m: Machine, fault: str, seed: int) -> np.ndarray:
    """One window of machine ``m`` with ``fault`` (float32, gain and nuisances applied).

    Example:
        >>> m = draw_machine(np.random.default_rng(1), "m1")
        >>> machine_window(m, "outer_race", seed=3).dtype.name
        'float32'
    """
    rng = np.random.default_rng(seed)
    spec = SimulationSpec(
        fault=fault, bearing=m.bearing, rpm=m.rpm, sample_rate_hz=m.sample_rate_hz,
        window_seconds=m.window_seconds, snr_db=m.snr_db, severity=_severity(rng, fault),
        impacts=ImpactSpec(slip_jitter=float(rng.uniform(*JITTER.get(fault, JITTER_DEFAULT))),
                           amplitude_spread=float(rng.uniform(0.05, 0.5)),
                           load_zone_depth=float(rng.uniform(0, 1))),
        resonance=ResonanceSpec(frequencies_hz=m.resonances_hz, gains=m.resonance_gains,
                                damping_ratio=m.damping),
        gear=m.gear)
    x = simulate(spec, 1, seed=seed).windows[0].astype(np.float64)
    n, fs = x.size, m.sample_rate_hz
    t = np.arange(n) / fs
    scale = np.std(x) + 1e-12
    red = np.cumsum(rng.normal(size=n))
    red = sosfilt(butter(1, 5.0, btype="high", fs=fs, output="sos"), red)
    x += m.red_share * scale * red / (np.std(red) + 1e-12)
    for k in (1, 2, 3):
        x += m.mains_level * scale / k * np.sin(2 * np.pi * k * m.mains_hz * t + rng.uniform(
            0, 2 * np.pi))
    if m.bursts_per_s > 0:  # impacts at random times: impulsive, not periodic at any order
        length = int(0.004 * fs)
        ring = np.sin(2 * np.pi * rng.uniform(800, 0.4 * fs) * np.arange(length) / fs) * np.exp(
            -np.arange(length) / (0.2 * length))
        for i in rng.integers(0, n - length, rng.poisson(m.bursts_per_s * n / fs)):
            x[i:i + length] += rng.uniform(1, 6) * scale * ring
    angle = 2 * np.pi * m.rpm / 60 * t  # unbalance, misalignment, looseness: the whole signal
    x *= 1 + sum(d * np.cos(k * angle + rng.uniform(0, 2 * np.pi))  # beats at shaft orders
                 for k, d in enumerate(m.shaft_modulation, 1))
    lo, hi = m.tilt_hz
    if lo > 50.0:  # transfer path: part of the band attenuated by 10-30 dB
        band = sosfilt(butter(2, [lo, hi], btype="band", fs=fs, output="sos"), x)
        x = band + 10 ** (-rng.uniform(0.5, 1.5)) * (x - band)
    drift = 10 ** (rng.uniform(-1.5, 1.5) / 20)
    return (m.gain * drift * x).astype(np.float32)


def _machine_set(m: Machine, classes: tuple[str, ...], per_class: int, baseline: int,
                 seed: int) -> WindowSet:
    jobs = [("healthy", True)] * baseline + [(c, False) for c in classes for _ in range(per_class)]
    windows = np.stack([machine_window(m, c, seed * 1000 + j) for j, (c, _) in enumerate(jobs)])
    b = len(jobs)
    return WindowSet(
        windows=windows, labels=np.array([c for c, _ in jobs]), rpm=np.full(b, m.rpm_label),
        sample_rate_hz=m.sample_rate_hz, bearing=m.bearing,
        recording=np.array([f"{m.name}-{c}" for c, _ in jobs]),
        start_s=np.arange(b) * m.window_seconds,
        meta={"machine": np.full(b, m.name), "commissioning": np.array(
            ["1" if first else "0" for _, first in jobs]), "rpm_true": np.full(b, str(m.rpm)),
            "rpm_source": np.full(b, "nominal")})


def randomised_sets(n_machines: int, windows_per_class: int = 3, baseline_windows: int = 2,
                    seed: int = 0, classes: tuple[str, ...] = CLASSES,
                    progress: bool = False) -> list[WindowSet]:
    """Windows of ``n_machines`` random machines, one ``WindowSet`` per machine (their sample
    rates and lengths differ). Recording id: machine x class, so a split by recording never
    shares a condition."""
    rng = np.random.default_rng(seed)
    machines = [draw_machine(rng, f"sim{seed}-m{i}") for i in range(n_machines)]
    return [_machine_set(m, classes, windows_per_class, baseline_windows, seed * 7919 + i)
            for i, m in enumerate(_track(machines, "simulating machines", progress))]


def geometry_of(ws: WindowSet, i: int) -> BearingGeometry:
    """The bearing of window ``i`` (a registered random one or a preset)."""
    return preset(str(ws.bearings()[i]))
