"""Features of vibration windows: time statistics, band energies and envelope-spectrum evidence.

The envelope chain follows Randall & Antoni (2011): pre-whiten the spectrum (divide by its moving
RMS), choose a demodulation band, square the band's envelope and take its spectrum. Every
window's candidate bands and spectral axis come from its own speed (never the batch's), so a
window's features do not depend on which windows share its batch. The band is the one whose
envelope shows the most defect-line evidence (the IESFOgram idea, Mauricio et al. 2020), not the
one of highest spectral kurtosis (SK): in heavy noise the SK maximum is a noise band while the
line still shows in the envelope spectrum of another. Candidate bands start above the highest
envelope line (below it sit shaft and gear tones) and are 1.5 x as wide. The largest SK
(``sk_max``) and the chosen band's (``band_sk``) are features; ``kurtogram.select_band`` is the
plain SK choice. Defect evidence is the envelope amplitude at each kinematic line (ftf, bpfo,
bpfi, bsf2; harmonics 1..3), the largest within +-``lines.LINE_TOLERANCE`` (slip), in dB above
the local noise floor (``lines``), clipped at 0. Lines sit in orders (multiples of shaft speed):
at order x fr for a constant ``rpm``; with an ``rpm_trace`` the squared envelope is first
resampled to uniform shaft angle (computed order tracking).

Two band searches (``method``, keys of ``BAND_SEARCHES``; the interface is
``band_search.BandSearch``): "tree" cuts
the full spectrum into a kurtogram-like tree of equal-width bands (``kurtogram``), the
reference; "stft" builds every candidate band from one short-time Fourier transform
(``stft_envelope``), needs no full-length FFT and is the cheaper one, for texts that measured
less separable. A model card records the method its inputs were computed with, and the daemon
follows it. The measurements: docs/benchmarks.md.

Conventions: ``kurtosis`` is excess kurtosis (0 for Gaussian noise); band energies are 4 equal
bands from 0 to Nyquist in dB relative to the total; ``band_centre_rel`` / ``band_width_rel`` are
fractions of Nyquist; a line spanning fewer than MIN_PERIODS periods in the window cannot be
resolved and reads 0 dB (the cage line of slewing bearings in windows under about a minute).
Choosing the band by line evidence lifts the levels of healthy windows above 0 dB.

Example:
    >>> import numpy as np
    >>> from slewguard.signal.kinematics import preset
    >>> x = np.random.default_rng(0).normal(size=(2, 12000))
    >>> t = extract(x, 12000.0, preset("cwru-6205"), rpm=1797.0)
    >>> t.values.shape == (2, len(FEATURE_NAMES))
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from slewguard.signal import kurtogram, numeric
from slewguard.signal.band_search import N_ENERGY_BANDS, SK_NAMES, BandSearch
from slewguard.signal.kinematics import BearingGeometry
from slewguard.signal.kurtogram import TreeSearch
from slewguard.signal.lines import (
    ENVELOPE_PAD,
    HARMONICS,
    LINES,
    MIN_PERIODS,
    PERIODS_TOLERANCE,
    Frame,
    low_bins,
    resolvable,
)
from slewguard.signal.stft_envelope import StftSearch

# Band searches by key (band_search.BandSearch): kurtogram tree (reference) or one STFT (fast).
BAND_SEARCHES: dict[str, BandSearch] = {"tree": TreeSearch(), "stft": StftSearch()}
METHODS = tuple(BAND_SEARCHES)

TIME_NAMES = ("rms", "peak", "crest_factor", "kurtosis", "skewness", "shape_factor")
TIME_NAMES += ("impulse_factor",)
BAND_NAMES = tuple(f"band{i + 1}_db" for i in range(N_ENERGY_BANDS))
ENVELOPE_NAMES = tuple(f"env_{line}_h{k}_db" for line in LINES for k in range(1, HARMONICS + 1)) + (
    "env_bpfi_sideband_db",
    "env_shaft_db",
)
FEATURE_NAMES: tuple[str, ...] = TIME_NAMES + BAND_NAMES + SK_NAMES + ENVELOPE_NAMES + ("rpm",)


@dataclass
class FeatureTable:
    """Features of a batch of windows: ``values[i, j]`` is feature ``names[j]`` of window i.

    Example:
        >>> t = FeatureTable(("rms",), np.ones((2, 1), np.float32))
        >>> t.row(1), len(t)
        ({'rms': 1.0}, 2)
    """

    names: tuple[str, ...]
    values: np.ndarray  # (B, F) float32

    def row(self, i: int) -> dict[str, float]:
        """Window ``i`` as a name -> value mapping in FEATURE_NAMES order."""
        return {n: float(v) for n, v in zip(self.names, self.values[i], strict=True)}

    def __len__(self) -> int:
        return int(self.values.shape[0])


def _as_batch(windows: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    x, _ = _as_rows(np.asarray(windows, dtype=dtype), dtype)
    return x


def _as_rows(windows: np.ndarray | Sequence[np.ndarray], dtype: type) -> tuple[Any, int]:
    """``numeric.as_rows`` in ``dtype``, refusing windows with NaN/inf samples."""
    x, n = numeric.as_rows(windows, dtype)
    finite = np.array([np.isfinite(row).all() for row in x])
    if not finite.all():
        rows = np.flatnonzero(~finite)[:5].tolist()
        raise ValueError(
            f"windows {rows} contain NaN/inf samples: drop or interpolate the gaps before "
            "feature extraction"
        )
    return x, n


def _check_rate(sample_rate_hz: float) -> float:
    fs = float(sample_rate_hz)
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"sample_rate_hz={sample_rate_hz} must be a positive number of Hz")
    return fs


def check_method(value: str, name: str = "method", fix: str = "pick one of them") -> str:
    """``value`` if it is a band search this slewguard computes, else a ValueError naming it.

    Example:
        >>> check_method("stft")
        'stft'
    """
    if value not in METHODS:
        raise ValueError(f"{name}={value!r} is not a band search this slewguard computes "
                         f"({', '.join(METHODS)}): {fix}")
    return value


def _centre(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Mean-removed windows into ``out`` (float32: features are ratios) and their time statistics
    (B, 7): RMS, peak, crest, kurtosis, skewness, shape and impulse factors.

    One pass after the mean, in blocks of numeric.CACHE_BLOCK samples that stay in the core's cache:
    every statistic reads the block just written instead of the whole batch again (timings:
    docs/benchmarks.md). Block sums in float32, summed across blocks in float64: within 1e-6 of
    float64 sums. The mean is numpy's pairwise float32 sum (relative error about 1e-7), cheaper
    than a float64-accumulated one.
    """
    b, n = out.shape
    sums = np.zeros((4, b))  # sum of squares, cubes, fourth powers, absolute values
    peak = np.zeros(b)
    work = np.empty((2, min(n, numeric.CACHE_BLOCK)), np.float32)
    for i in range(b):
        row = x[i]  # read once from memory by its sum; the blocks find it in the cache
        mean = row.dtype.type(row.sum(dtype=row.dtype) / n)  # pairwise sums
        for start in range(0, n, numeric.CACHE_BLOCK):
            stop = min(n, start + numeric.CACHE_BLOCK)
            block, sq, ab = out[i, start:stop], work[0, : stop - start], work[1, : stop - start]
            np.subtract(row[start:stop], mean, out=block, casting="unsafe")
            np.multiply(block, block, out=sq)
            np.abs(block, out=ab)
            sums[:, i] += (sq.sum(), np.dot(sq, block), np.dot(sq, sq), ab.sum())
            peak[i] = max(peak[i], float(ab.max()))
    tiny = 1e-30
    rms = np.sqrt(sums[0] / n)
    var, mean_abs = rms**2 + tiny, sums[3] / n
    kurt, skew = sums[2] / n / var**2 - 3.0, sums[1] / n / var**1.5
    return np.stack([rms, peak, peak / (rms + tiny), kurt, skew, rms / (mean_abs + tiny),
                     peak / (mean_abs + tiny)], axis=1)


def envelope_spectrum(
    windows: np.ndarray,
    sample_rate_hz: float,
    band_hz: tuple[float, float] | None = None,
    *,
    max_freq_hz: float | None = None,
    whiten: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Squared-envelope spectrum of each window: (freqs_hz (F,), amplitude (B, F)).

    ``band_hz=None`` picks each window's band by spectral kurtosis
    (``kurtogram.select_band``); extract() picks by defect-line evidence instead and records
    its band as ``band_centre_rel`` and ``band_width_rel``. The axis has ENVELOPE_PAD bins per
    1 / duration, up to ``max_freq_hz``.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(3, 5000))
        >>> f, a = envelope_spectrum(x, 5000.0, band_hz=(500.0, 1500.0), max_freq_hz=100.0)
        >>> a.shape[0], bool(f[-1] <= 100.0)
        (3, True)
    """
    x = _as_batch(windows)
    fs = _check_rate(sample_rate_hz)
    n = x.shape[1]
    spectrum = np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1)
    spectrum = kurtogram.whiten(spectrum) if whiten else spectrum
    if band_hz is None:
        bins = kurtogram.select_band(spectrum, n, fs).bins
    else:
        lo, hi = (float(v) for v in band_hz)
        first, stop = max(1, round(lo * n / fs)), min(round(hi * n / fs), spectrum.shape[1])
        if not (0 <= lo < hi <= fs / 2 + 2 * fs / n and stop - first >= 8):  # a bin of slack
            raise ValueError(
                f"band_hz={band_hz}: need 0 <= low < high <= Nyquist ({fs / 2:g} Hz) spanning at "
                "least 8 FFT bins: widen the band or pass longer windows"
            )
        bins = np.tile([first, stop], (len(x), 1))
    top_hz = float(np.diff(bins, axis=1).min()) * fs / n
    top_hz = top_hz if max_freq_hz is None else min(top_hz, max_freq_hz)
    step = 1 / (ENVELOPE_PAD * n / fs)
    frame = Frame(1.0, 0.0, n / fs, None, step, int(top_hz / step) + 1, low_bins(top_hz, n / fs))
    amp = [
        frame.spectra(kurtogram.envelope_bins(r[None, a:b], frame.n_low).low, ENVELOPE_PAD)[0]
        for r, (a, b) in zip(spectrum, bins, strict=True)
    ]
    return frame.axis(ENVELOPE_PAD), np.stack(amp)


def _speeds(
    rpm: float | np.ndarray | None, rpm_trace: np.ndarray | None, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean |rpm| per window (B,) and the validated |rpm| trace (B, N) or None."""
    if rpm is None and rpm_trace is None:
        raise ValueError(
            "rpm=None: pass the shaft speed (rpm=, a number or one per window) or an rpm_trace; "
            "defect lines sit at fixed multiples of shaft speed and cannot be placed without it"
        )
    trace = None
    if rpm_trace is not None:
        trace = np.abs(np.asarray(rpm_trace, dtype=np.float64))
        trace = trace[None, :] if trace.ndim == 1 else trace
        if trace.shape != shape or not np.isfinite(trace).all():
            raise ValueError(
                f"rpm_trace has shape {np.shape(rpm_trace)} (all finite: "
                f"{bool(np.isfinite(trace).all())}): pass one finite speed in rpm per vibration "
                f"sample, shape {shape}"
            )
    if rpm is None:
        speeds = trace.mean(axis=1)
    else:
        speeds = np.abs(np.broadcast_to(np.asarray(rpm, dtype=np.float64), (shape[0],)))
    if not (np.isfinite(speeds).all() and (speeds > 0).all()):
        raise ValueError(
            f"rpm={rpm if rpm is not None else 'mean of rpm_trace'} gives speeds "
            f"{speeds[:4].tolist()}: every window needs a finite, non-zero shaft speed in rpm"
        )
    return speeds.astype(np.float64), trace


def _check_resolvable(
    revs: np.ndarray, speeds: np.ndarray, orders: dict[str, float], fs: float, n: int
) -> None:
    """Raise when a window is too short for the slowest impact line or fs too low for the top."""
    slowest = min(orders["bpfo"], orders["bpfi"], orders["bsf2"])
    worst = int(np.argmin(revs))
    if not resolvable(revs[worst] * slowest):
        # quoted half the tolerance inside the limit and rounded up: a window cut to it passes
        need_s = MIN_PERIODS * (1 - PERIODS_TOLERANCE / 2) / (slowest * speeds[worst] / 60.0)
        raise ValueError(
            f"window of {n / fs:g} s holds {revs[worst] * slowest:.3g} periods of the slowest "
            f"defect line at {speeds[worst]:g} rpm (window {worst}): pass windows of at least "
            f"{_round_up(need_s):g} s ({MIN_PERIODS:g} periods) at this speed"
        )
    top_hz = HARMONICS * max(orders.values()) * speeds.max() / 60.0
    if fs / 2 < 4 * top_hz:  # room for a demodulation band above the envelope lines
        raise ValueError(
            f"sample_rate_hz={fs:g}: Nyquist {fs / 2:g} Hz is below 4 x the highest defect "
            f"harmonic ({top_hz:.1f} Hz at {speeds.max():g} rpm): sample at >= {8 * top_hz:.0f} Hz"
        )


def _round_up(x: float, digits: int = 2) -> float:
    """``x`` > 0 rounded up to ``digits`` significant digits: a length quoted as the minimum
    must pass (1.1889 -> 1.2, 0.02131 -> 0.022)."""
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(x)))
    return math.ceil(x * scale) / scale


def extract(
    windows: np.ndarray | Sequence[np.ndarray],
    sample_rate_hz: float,
    bearing: BearingGeometry,
    rpm: float | np.ndarray | None = None,
    rpm_trace: np.ndarray | None = None,
    method: str = "tree",
) -> FeatureTable:
    """Features of a batch of windows (B, N), a list of windows (N,) or one window (N,), in
    FEATURE_NAMES order. A list is read in place (no stacked copy of the batch).

    ``rpm`` is the shaft speed (a number or one per window); ``rpm_trace`` (B, N), a speed sample
    per vibration sample, switches on computed order tracking for varying speed or reversal.
    ``method`` is the band search: "tree" (the kurtogram tree over the full spectrum, the
    reference) or "stft" (every band from one STFT, cheaper, texts measured less separable;
    ``stft_envelope``).

    Example:
        >>> from slewguard.signal.kinematics import preset
        >>> x = np.random.default_rng(1).normal(size=(5000 * 20,))
        >>> row = extract(x, 5000.0, preset("slew-4pc-1000"), rpm=6.0).row(0)
        >>> row["rpm"], row["env_bpfo_h1_db"] < 15
        (6.0, True)
    """
    search = BAND_SEARCHES[check_method(method)]
    x, n = _as_rows(windows, search.dtype)
    fs = _check_rate(sample_rate_hz)
    speeds, trace = _speeds(rpm, rpm_trace, (len(x), n))
    o = bearing.orders()
    orders = {"ftf": o.ftf_hz, "bpfo": o.bpfo_hz, "bpfi": o.bpfi_hz, "bsf2": o.bsf2_hz}
    revs = speeds / 60.0 * n / fs if trace is None else trace.sum(axis=1) / 60.0 / fs
    _check_resolvable(revs, speeds if trace is None else trace.max(axis=1), orders, fs, n)
    # mean removal and time statistics: one chunk of rows per core
    xc = np.empty((len(x), n), np.float32)  # filled chunk by chunk: no per-chunk copies to join
    times = numeric.map_chunks(lambda rows: _centre(x[rows], xc[rows]), len(x))
    columns = search.search(xc, speeds, trace, orders, fs)
    values = np.concatenate(
        [np.concatenate(times), columns.energies, columns.band, columns.lines, speeds[:, None]],
        axis=1,
    )
    return FeatureTable(FEATURE_NAMES, values.astype(np.float32))
