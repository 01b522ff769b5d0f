"""Rig-invariant defect evidence: what a window says about its bearing, not about its machine.

Every quantity here is unchanged by the sensor's gain and by the structure's transfer path, so a
model trained on some rigs reads another rig's windows the same way:

1. Cepstral pre-whitening (Borghesani et al. 2013): the spectrum divided by its own magnitude,
   above ``BAND_LOW_FRACTION`` of Nyquist. Resonances, transfer path, gain and tonal lines are
   gone; what stays is *when* energy arrives, i.e. impacts and their periodicity.
2. The squared envelope of that signal and its spectrum.
3. Each defect line's prominence: its peak within a relative tolerance over the median of its
   neighbourhood, in dB (>= 0), at harmonics 1..HARMONICS of BPFO, BPFI, 2 x BSF, BSF, FTF and
   the shaft, plus the sidebands each fault predicts (BPFI +- shaft, 2 x BSF +- FTF).
4. The shaft speed, when it is only nominal, comes from the window: the scale ``s`` within
   ``1 +- speed_uncertainty`` whose comb of defect and shaft harmonics stands out most
   (``estimate_speed``); its ``confidence`` is that comb's lead in dB over the median scale.
5. Shape statistics of the whitened signal (excess kurtosis, crest factor), dimensionless.

Level enters only relative to the bearing's own healthy baseline (``Baseline``), never absolute.

Faults are cyclostationary (impacts jitter by ~1 % of their period), so they survive the
whitening; a perfectly periodic signal is deterministic and does not.

Example:
    >>> import numpy as np
    >>> from slewguard.signal.kinematics import preset
    >>> x = impact_train(12000.0, 2.0, 1797.0 / 60 * 3.5848, seed=0)  # outer race, CWRU rig
    >>> row = extract(1e-3 * x, 12000.0, preset("cwru-6205"), rpm=1797.0 * 1.03,
    ...               speed_uncertainty=0.05)                # label 3 % off, gain arbitrary
    >>> row["bpfo_h1_db"] > 15, abs(row["speed_scale"] - 1 / 1.03) < 0.005
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from slewguard.signal import fft, numeric
from slewguard.signal.kinematics import BearingGeometry
from slewguard.signal.numeric import median

HARMONICS = 3
# line name -> key in DefectFrequencies.as_dict(); order fixes the feature columns
LINES = {"bpfo": "bpfo_hz", "bpfi": "bpfi_hz", "bsf2": "bsf2_hz", "bsf": "bsf_hz",
         "ftf": "ftf_hz", "shaft": "shaft_hz"}
COMB_LINES = ("bpfo", "bpfi", "bsf2", "shaft")  # combs the speed fit may lock on
BAND_LOW_FRACTION = 0.1  # whitened band starts here (x Nyquist): below sit shaft and gear tones
BAND_HIGH_FRACTION = 0.9  # ... and ends below the anti-alias filter's roll-off
TOLERANCE_MEASURED = 0.02  # +-2 % around a line when the rpm is measured (slip)
TOLERANCE_ESTIMATED = 0.006  # +-0.6 % once the speed is fitted to the window's own comb
SPEED_STEP = 0.002  # grid step of the speed scale
FLOOR_SPAN = 0.2  # floor: median over +-20 % of the line frequency
PAD = 4  # zero padding of the envelope FFT
SHAPE_NAMES = ("kurtosis_w", "crest_w")
LINE_NAMES = tuple(f"{line}_h{k}_db" for line in LINES for k in range(1, HARMONICS + 1))
SIDEBAND_NAMES = ("bpfi_sideband_db", "bsf2_sideband_db")
SPEED_NAMES = ("speed_scale", "speed_confidence_db")
EVIDENCE_NAMES: tuple[str, ...] = LINE_NAMES + SIDEBAND_NAMES + SHAPE_NAMES + SPEED_NAMES


@dataclass(frozen=True)
class EnvelopeSpectrum:
    """Amplitude spectrum of a whitened window's squared envelope: ``amp[k]`` at k x ``df_hz``."""

    amp: np.ndarray
    df_hz: float
    envelope: np.ndarray  # squared envelope of the whitened band, for shape statistics


def envelope_spectrum(x: np.ndarray, sample_rate_hz: float, top_hz: float) -> EnvelopeSpectrum:
    """Whiten ``x`` (cepstral pre-whitening), square its analytic envelope and take its spectrum
    up to ``top_hz``.

    Example:
        >>> e = envelope_spectrum(np.random.default_rng(0).normal(size=4096), 4096.0, 100.0)
        >>> round(e.df_hz, 3), e.amp.shape[0] > 100 * 4
        (0.25, True)
    """
    x = np.asarray(x, np.float32)  # single precision FFTs: cheaper, ample for dB
    n = x.size
    spec = fft.rfft(x)  # no mean removed first: the mean is bin 0, which the band leaves out
    lo, hi = max(int(BAND_LOW_FRACTION * spec.size), 1), int(BAND_HIGH_FRACTION * spec.size)
    # The envelope does not change when the band is shifted down to 0 Hz, and the shifted band
    # needs only as many samples as it has bins (plus the envelope lines read, so their
    # aliases stay above top_hz): 0.4 x n instead of n.
    length = fft.next_fast_len(hi - lo + int(top_hz * n / sample_rate_hz) + 16)
    baseband = np.zeros(length, np.complex64)
    # Temporaries written in place where they can be: a fresh array of a window's size costs
    # page faults as well as the arithmetic.
    mag = np.abs(spec[lo:hi])
    np.maximum(mag, np.float32(1e-30), out=mag)
    np.divide(spec[lo:hi], mag, out=baseband[:hi - lo])
    a = fft.ifft(baseband)
    env = np.square(a.real)
    env += np.square(a.imag)
    # Only the envelope's low end is read: cut its spectrum above 2 x top_hz and go back to a
    # short signal, so the zero-padded FFT runs on a few thousand samples, not PAD x n.
    full = fft.rfft(env)
    full[0] = 0  # the envelope's mean, without a mean-removed copy of it
    m = fft.next_fast_len(2 * int(2 * top_hz * n / sample_rate_hz) + 32, real=True) // 2 + 1
    m = min(m, full.size)  # (a smooth 2 (m - 1): the padded FFT below stays fast)
    short = fft.irfft(full[:m], 2 * (m - 1)) if m < full.size else env - env.mean()
    df = sample_rate_hz / (PAD * n)
    keep = min(int(top_hz / df) + 2, PAD * short.size // 2)
    # single precision here too (cheaper than double); the lines are read in double
    amp = np.abs(fft.rfft(short * _hanning(short.size), PAD * short.size)[:keep])
    return EnvelopeSpectrum(amp.astype(np.float64), df, env)


@lru_cache(maxsize=16)
def _hanning(n: int) -> np.ndarray:
    """``np.hanning(n)`` in float32, computed once per length (a sensor's windows share it)."""
    window = np.hanning(n).astype(np.float32)
    window.setflags(write=False)
    return window


def _prominence(e: EnvelopeSpectrum, hz: np.ndarray, tol: float) -> np.ndarray:
    """dB (>= 0) of the peak within +-tol x f over the median of +-FLOOR_SPAN x f, for each f
    in hz; 0 where the spectrum does not reach.

    Example:
        >>> e = EnvelopeSpectrum(np.r_[np.ones(100), 100.0, np.ones(100)], 1.0, np.ones(1))
        >>> _prominence(e, np.array([100.0, 50.0]), 0.02).round(1).tolist()
        [40.0, 0.0]
    """
    floor = _floor(e, hz, tol)
    reached = np.isfinite(floor)
    out = np.zeros(len(hz))
    out[reached] = 20 * np.log10(np.maximum(_peaks(e, hz[reached], tol), 1e-300)
                                 / np.maximum(floor[reached], 1e-300))
    return np.maximum(out, 0.0)


def _floor(e: EnvelopeSpectrum, hz: np.ndarray, tol: float) -> np.ndarray:
    """Median of +-FLOOR_SPAN x f around each f, the line's own +-tol x f left out; NaN where
    the spectrum does not reach."""
    out = np.full(len(hz), np.nan)
    for i, f in enumerate(np.asarray(hz, np.float64)):
        c = f / e.df_hz
        w = max(tol * c, 1.0)
        lo, hi = int(np.floor(c - w)), int(np.ceil(c + w)) + 1
        span = max(int(FLOOR_SPAN * c), 15)
        if lo >= 1 and hi + span <= e.amp.size:
            out[i] = median(np.concatenate((e.amp[max(1, lo - span):lo], e.amp[hi:hi + span])))
    return out


def _peaks(e: EnvelopeSpectrum, hz: np.ndarray, tol: float) -> np.ndarray:
    """Largest amplitude within +-tol x f of each f (0 outside the spectrum), vectorised."""
    c = hz / e.df_hz
    w = np.maximum(tol * c, 1.0)
    lo = np.clip(np.floor(c - w).astype(np.int64), 1, e.amp.size - 1)
    hi = np.clip(np.ceil(c + w).astype(np.int64) + 1, lo + 1, e.amp.size)
    pairs = np.stack([lo, hi], axis=1).ravel()
    padded = np.r_[e.amp, 0.0]  # reduceat may index one past the end
    return np.maximum.reduceat(padded, pairs)[::2]


def _orders(bearing: BearingGeometry) -> np.ndarray:
    """(L,) order of each of LINES."""
    o = bearing.orders().as_dict()
    return np.array([o[key] for key in LINES.values()])


def top_order(bearing: BearingGeometry, speed_uncertainty: float) -> float:
    """Highest envelope order a window's lines and floors reach."""
    return float(_orders(bearing).max() * HARMONICS * (1 + speed_uncertainty) * (1 + FLOOR_SPAN)
                 + 2.0)


@dataclass(frozen=True)
class SpeedEstimate:
    """The shaft speed a window's own comb gives: ``rpm`` = nominal x ``scale``."""

    rpm: float
    scale: float
    confidence_db: float


def estimate_speed(e: EnvelopeSpectrum, bearing: BearingGeometry, rpm: float,
                   speed_uncertainty: float) -> SpeedEstimate:
    """The speed scale within 1 +- speed_uncertainty whose strongest comb (HARMONICS lines of
    one of COMB_LINES) has the largest summed prominence.

    Example:
        >>> from slewguard.signal.kinematics import preset
        >>> g = preset("cwru-6205")
        >>> fs, n = 12000.0, 24000
        >>> t = np.arange(n) / fs
        >>> x = np.random.default_rng(1).normal(size=n) * (1 + ((t * 31 * 3.5848) % 1 < 0.1))
        >>> e = envelope_spectrum(x, fs, 600.0)
        >>> abs(estimate_speed(e, g, 1800.0, 0.08).rpm / 60 - 31.0) < 0.2
        True
    """
    scales = np.arange(1 - speed_uncertainty, 1 + speed_uncertainty + 1e-9, SPEED_STEP)
    orders = _orders(bearing)
    comb = np.array([orders[list(LINES).index(line)] for line in COMB_LINES])
    h = np.arange(1, HARMONICS + 1)
    centre = rpm / 60.0 * comb[:, None] * h[None, :]  # (C, H) lines at the nominal speed
    # the +-20 % floor barely moves over +-8 %: one per line, its +-2 % left out
    floor = _floor(e, centre.ravel(), TOLERANCE_MEASURED)
    hz = scales[:, None] * centre.ravel()[None, :]  # (S, C*H)
    peak = _peaks(e, hz.ravel(), TOLERANCE_ESTIMATED).reshape(hz.shape)
    prom = np.maximum(20 * np.log10(np.maximum(peak, 1e-300) / floor[None, :]), 0.0)
    prom[:, ~(floor > 0)] = 0.0  # (NaN: beyond the spectrum)
    score = prom.reshape(len(scales), *centre.shape).sum(axis=2).max(axis=1)  # (S,)
    best = int(np.argmax(score))
    lo = hi = best  # a line is wider than the grid step: take the middle of the top plateau
    while lo > 0 and score[lo - 1] >= score[best] - 1e-9:
        lo -= 1
    while hi < len(score) - 1 and score[hi + 1] >= score[best] - 1e-9:
        hi += 1
    best = (lo + hi) // 2
    return SpeedEstimate(float(rpm * scales[best]), float(scales[best]),
                         float(score[best] - np.median(score)))


def impact_train(sample_rate_hz: float, seconds: float, rate_hz: float, seed: int = 0,
                 amplitude: float = 4.0, resonance_hz: float = 3000.0) -> np.ndarray:
    """Unit white noise plus decaying resonance bursts at ``rate_hz`` (1 % timing jitter): a
    textbook localised fault, for examples and tests.

    Example:
        >>> impact_train(1000.0, 1.0, 10.0).shape
        (1000,)
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate_hz))
    x = rng.normal(size=n)
    k = np.arange(int(0.02 * sample_rate_hz))
    burst = amplitude * np.sin(2 * np.pi * resonance_hz * k / sample_rate_hz) * np.exp(
        -k / (0.0025 * sample_rate_hz))
    times = np.arange(0.0, seconds, 1 / rate_hz)
    for start in (times + rng.normal(0, 0.01 / rate_hz, times.size)) * sample_rate_hz:
        i = int(start)
        if 0 <= i < n:
            x[i:i + k.size] += burst[: n - i]
    return x


def _shape(env: np.ndarray) -> tuple[float, float]:
    """Excess kurtosis and crest factor of the whitened band signal, from its squared envelope
    ``env`` = |a|^2 (a narrow-band x = Re(a e^(iwt)) has E x^4 / (E x^2)^2 = 1.5 E|a|^4 /
    (E|a|^2)^2 and peak / rms = sqrt(2 max|a|^2 / E|a|^2)); Gaussian noise gives (0, ~4-5)."""
    env = np.array(env, np.float64)  # a copy: squared in place below
    mean, peak = float(env.mean()), float(env.max())
    if mean <= 0:
        return 0.0, 0.0
    np.square(env, out=env)
    return float(1.5 * np.mean(env) / mean**2 - 3.0), float(np.sqrt(2 * peak / mean))


def extract(x: np.ndarray, sample_rate_hz: float, bearing: BearingGeometry, rpm: float,
            speed_uncertainty: float = 0.0) -> dict[str, float]:
    """Evidence of one window (EVIDENCE_NAMES). ``speed_uncertainty`` > 0: ``rpm`` is nominal and
    the speed is fitted within +- that fraction; 0: ``rpm`` is measured and lines get +-2 %.

    Example:
        >>> from slewguard.signal.kinematics import preset
        >>> row = extract(np.random.default_rng(0).normal(size=24000), 12000.0,
        ...               preset("cwru-6205"), 1797.0)
        >>> sorted(row) == sorted(EVIDENCE_NAMES), row["bpfo_h1_db"] < 12
        (True, True)
    """
    if not rpm > 0:
        raise ValueError(f"rpm={rpm} must be > 0: give the shaft speed (bearing.rpm)")
    fr = rpm / 60.0
    e = envelope_spectrum(x, sample_rate_hz, top_order(bearing, speed_uncertainty) * fr)
    if speed_uncertainty > 0:
        speed = estimate_speed(e, bearing, rpm, speed_uncertainty)
        tol = TOLERANCE_ESTIMATED
    else:
        speed, tol = SpeedEstimate(rpm, 1.0, 0.0), TOLERANCE_MEASURED
    f = speed.rpm / 60.0
    orders = _orders(bearing)
    h = np.arange(1, HARMONICS + 1)
    lines = _prominence(e, (f * orders[:, None] * h[None, :]).ravel(), tol)
    o = bearing.orders()
    side = _prominence(e, f * np.array([o.bpfi_hz - 1, o.bpfi_hz + 1,
                                        o.bsf2_hz - o.ftf_hz, o.bsf2_hz + o.ftf_hz]), tol)
    values = [*lines, 0.5 * (side[0] + side[1]), 0.5 * (side[2] + side[3]),
              *_shape(e.envelope), speed.scale, speed.confidence_db]
    return dict(zip(EVIDENCE_NAMES, map(float, values), strict=True))


BASELINE_NAMES = ("rms_rel_db", "kurtosis_rel", "has_baseline")
SUSPECT_LINE_DB = 15.0  # a commissioning window with a BPFO/BPFI line this strong is not healthy


@dataclass(frozen=True)
class Baseline:
    """A bearing's own healthy level, learned at commissioning: median RMS and excess kurtosis
    of its first windows. ``suspect``: most of those windows already showed a defect line, so
    the bearing may have been faulty at commissioning and its deltas are not used.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> b = Baseline.from_windows([rng.normal(size=1000) for _ in range(4)])
        >>> round(relative(3 * rng.normal(size=1000), b)["rms_rel_db"], 1)
        9.4
    """

    rms: float
    kurtosis: float
    n_windows: int
    suspect: bool = False

    @classmethod
    def from_windows(cls, windows: list[np.ndarray], rows: list[dict] | None = None) -> Baseline:
        """Median level of ``windows``; ``rows`` (their ``extract`` evidence) flag a suspect one."""
        if not len(windows):
            raise ValueError("no commissioning windows: a baseline needs at least one window")
        lines = None if rows is None else [max(r["bpfo_h1_db"], r["bpfi_h1_db"]) for r in rows]
        return cls.from_levels([level(w) for w in windows], lines)

    @classmethod
    def from_levels(cls, levels: list[tuple[float, float]],
                    lines_db: list[float] | None = None) -> Baseline:
        """The same from each window's ``level`` (rms, kurtosis) and strongest race line."""
        if not len(levels):
            raise ValueError("no commissioning windows: a baseline needs at least one window")
        stats = np.asarray(levels, np.float64)
        suspect = lines_db is not None and np.mean(np.asarray(lines_db) >= SUSPECT_LINE_DB) > 0.5
        return cls(float(np.median(stats[:, 0])), float(np.median(stats[:, 1])), len(levels),
                   bool(suspect))


def level(x: np.ndarray) -> tuple[float, float]:
    """(rms, excess kurtosis) of a window.

    Example:
        >>> [round(v, 3) for v in level(np.array([1.0, -1.0, 1.0, -1.0]))]
        [1.0, -2.0]
    """
    return _level(np.asarray(x))


def _level(x: np.ndarray) -> tuple[float, float]:
    """Centred second and fourth moments over cache-sized blocks of one reused buffer, summed
    in double: no window-sized temporary (a fresh one costs its page faults on every window)."""
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    mean = float(x.sum(dtype=np.float64)) / max(x.size, 1)
    work = np.empty(min(x.size, numeric.CACHE_BLOCK), x.dtype)
    power = quartic = 0.0
    for start in range(0, x.size, numeric.CACHE_BLOCK):
        block = work[: min(x.size - start, numeric.CACHE_BLOCK)]
        np.subtract(x[start:start + block.size], mean, out=block, casting="unsafe")
        power += float(np.dot(block, block))
        np.square(block, out=block)  # two products instead of x**4 (pow is far slower)
        quartic += float(np.dot(block, block))
    var = power / max(x.size, 1)
    return float(np.sqrt(var)), float(quartic / max(x.size, 1) / max(var, 1e-300) ** 2 - 3.0)


def relative(x: np.ndarray, baseline: Baseline | None) -> dict[str, float]:
    """BASELINE_NAMES of one window: level over the bearing's baseline (zeros without one).

    Example:
        >>> relative(np.ones(8), None)
        {'rms_rel_db': 0.0, 'kurtosis_rel': 0.0, 'has_baseline': 0.0}
    """
    return relative_level(level(x), baseline) if _usable(baseline) else _no_baseline()


def relative_level(levels: tuple[float, float], baseline: Baseline | None) -> dict[str, float]:
    """:func:`relative` from the window's :func:`level` (rms, excess kurtosis), computed once.

    Example:
        >>> relative_level((2.0, 1.0), Baseline(1.0, 0.5, 10))["rms_rel_db"].__round__(2)
        6.02
    """
    if not _usable(baseline):
        return _no_baseline()
    rms, kurt = levels
    return {"rms_rel_db": float(20 * np.log10(max(rms, 1e-300) / baseline.rms)),
            "kurtosis_rel": kurt - baseline.kurtosis, "has_baseline": 1.0}


def _usable(baseline: Baseline | None) -> bool:
    """A baseline the level is read against: learned, not suspect, with a level."""
    return baseline is not None and not baseline.suspect and baseline.rms > 0


def _no_baseline() -> dict[str, float]:
    return dict.fromkeys(BASELINE_NAMES, 0.0)
