"""Sensor and data-quality checks on raw windows, before any diagnosis.

A window that fails a check gets a named sensor-fault verdict instead of a bearing diagnosis: a
stuck, clipped or loose sensor must never raise a bearing-fault ticket. Every check works on the
whole batch (B, N) at once and uses only measurable quantities:

- out_of_range: a sample beyond ``range_max_abs`` in magnitude (e.g. +-3e38, the float32
  rail): no sensor reads that in any unit, so the payload is corrupt or the value a rail. The
  other checks are skipped for such a window (their statistics would overflow).
- flat_line: fewer than ``flat_min_distinct`` distinct sample values, or RMS below
  ``flat_rms_ratio`` x the expected RMS (a dead channel, a stuck ADC).
- clipping: samples sitting *exactly* on the window's extreme value (to ``clip_rel_tol`` of the
  span) in runs of 2 or more; a real signal touches its maximum once.
- spikes: isolated samples more than ``spike_sigma`` robust sigmas (1.4826 MAD) from the median
  whose two neighbours are both below ``spike_neighbour_ratio`` of it (a resonance rings over many
  samples; an electrical spike is one sample).
- dropout: a run of identical consecutive values (zeros or a held value) of at least
  ``dropout_min_seconds`` that is not on the clipping rail.
- dc_offset: |mean| above ``dc_max_ratio`` x the AC RMS. An IEPE accelerometer is AC-coupled.
- drift: a linear trend whose rise over the window exceeds ``drift_max_ratio`` x the RMS around it.
- loose_mount: a broadband rise: RMS at least ``loose_rms_ratio`` x the expected (baseline) RMS,
  with a flat spectrum (Welch spectral flatness >= ``loose_min_flatness``) and no impulsiveness
  (excess kurtosis <= ``loose_max_kurtosis``). A spall raises RMS *with* kurtosis and in the
  resonance bands; a rattling mount raises every band alike. Needs ``expected.rms``.
- sample_rate_mismatch: the payload's rate differs from the configured one.
- rpm_mismatch: a known shaft-order line (e.g. the ring-gear mesh, order = teeth) is found off
  the configured rpm by more than ``rpm_tolerance``: on the time axis at constant speed, on the
  shaft-angle axis (``angle_resample``) when an rpm trace is given and does not reverse. Needs
  ``expected.order_lines`` and at least one shaft turn per window.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 20000))
    >>> x[1, 5000:5400] = 0.0
    >>> [v.faults for v in check(x, 5000.0)]
    [(), ('dropout',)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from slewguard.signal import fft, numeric
from slewguard.signal.numeric import median

# Fixed set, most telling first: usable as a Prometheus label value and in "sensor_fault:<name>".
QUALITY_FAULTS: tuple[str, ...] = (
    "out_of_range",
    "flat_line",
    "sample_rate_mismatch",
    "clipping",
    "dropout",
    "spikes",
    "dc_offset",
    "drift",
    "loose_mount",
    "rpm_mismatch",
)


RPM_MIN_REVOLUTIONS = 1.0  # shaft turns a window needs before its rpm is judged
QUALITY_ROWS = 4  # windows per call of the checks: their (rows, N) masks stay in the cache
OFFSET_EXACT = 4.0  # |mean| / AC RMS above which a row's variance is summed about its mean
SPIKE_REACH = 8  # samples either side a spike must stand alone in (a ring-down lasts longer)


class QualityThresholds(BaseModel):
    """Thresholds of the checks; defaults measured on simulated and CWRU windows (see comments)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Above any ADC count (int32: 2.1e9) and any physical unit, and low enough that the float32
    # sums of squares of a window (N x 1e24 for N up to 2**24) stay far from overflow (3.4e38).
    range_max_abs: float = Field(1e12, gt=0, description="|sample| above this: out_of_range")
    # 12-bit and better sensors give thousands of distinct values per window; < 8 is a stuck ADC.
    flat_min_distinct: int = Field(8, ge=2, description="fewer distinct values: flat line")
    # -40 dB below the bearing's own level is a dead channel, not a quiet machine.
    flat_rms_ratio: float = Field(0.01, gt=0, description="RMS below this x expected: flat line")
    # float32 rails: a clipped sample equals the extreme; noise never repeats it in a run.
    clip_rel_tol: float = Field(1e-6, gt=0, description="distance to the extreme, x span")
    clip_min_samples: int = Field(6, ge=2, description="rail samples in runs >= 2 to call clipping")
    # Gaussian noise exceeds 20 sigma with p ~ 1e-88; impacts ring over > 10 samples.
    spike_sigma: float = Field(20.0, gt=3, description="robust sigmas (1.4826 MAD) of a spike")
    spike_neighbour_ratio: float = Field(0.3, gt=0, lt=1, description="neighbours below this x")
    # A held value for 5 ms (25 samples at 5 kHz): float noise never repeats twice in a row.
    dropout_min_seconds: float = Field(0.005, gt=0, description="shortest held run, seconds")
    dropout_min_samples: int = Field(16, ge=2, description="shortest held run, samples")
    # The shaft 1x of a slow ring (1-3 rpm: one turn per 20-60 s) spans less than a window and
    # reads as an offset / trend on healthy windows; both limits sit above that runout, and a
    # sensor fault is bigger.
    dc_max_ratio: float = Field(1.5, gt=0, description="|mean| / AC RMS above this: dc_offset")
    drift_max_ratio: float = Field(3.5, gt=0, description="trend rise / residual RMS: drift")
    # +6 dB over baseline, white-like (white noise: 0.9 with 64-segment Welch) and not impulsive.
    loose_rms_ratio: float = Field(2.0, gt=1, description="RMS / expected RMS for loose_mount")
    loose_min_flatness: float = Field(0.5, gt=0, le=1, description="Welch spectral flatness")
    loose_max_kurtosis: float = Field(1.0, description="excess kurtosis at most this")
    sample_rate_rel_tol: float = Field(0.001, gt=0, description="payload vs configured rate")
    # Half of the 5 % rpm error the diagnosis is benchmarked against; the mesh sidebands sit at
    # 1/teeth (0.8 % for 120 teeth), inside the tolerance.
    rpm_tolerance: float = Field(0.02, gt=0, lt=0.5, description="relative rpm error allowed")
    rpm_search: float = Field(0.1, gt=0, lt=0.5, description="search +- this around the line")
    rpm_min_prominence_db: float = Field(15.0, gt=0, description="line over search-band median")


class QualityExpectations(BaseModel):
    """What the configuration says the sensor should deliver (all optional).

    Example:
        >>> QualityExpectations(sample_rate_hz=5000.0, rpm=6.0, order_lines=(120.0,)).rpm
        6.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate_hz: float | None = Field(None, gt=0, description="configured sample rate, Hz")
    rpm: float | None = Field(None, gt=0, description="configured shaft speed, rpm")
    constant_speed: bool = Field(True, description="False: speed varies, skip the rpm check")
    order_lines: tuple[float, ...] = Field(
        (), description="shaft orders that show as lines, e.g. (ring_teeth,) for the gear mesh")
    rms: float | None = Field(None, gt=0, description="the bearing's expected (baseline) RMS")


@dataclass(frozen=True)
class QualityVerdict:
    """Outcome for one window: ``ok`` is True when ``faults`` is empty."""

    ok: bool
    faults: tuple[str, ...]
    detail: str


@dataclass(frozen=True)
class _RowStats:
    """Per-row statistics the checks share, (B,) float64 each."""

    mean: np.ndarray
    rms: np.ndarray  # about the mean (AC RMS)
    slope: np.ndarray  # least-squares rise over the whole window
    ramp_power: float  # mean square of the time axis (about 1 / 12)
    hi: np.ndarray
    lo: np.ndarray


def _row_stats(x: np.ndarray, hi: np.ndarray | None = None,
               lo: np.ndarray | None = None) -> _RowStats:
    """Mean, AC RMS, linear trend and extremes of every row without a copy of the batch.

    Each row is read by its pairwise sum and then, from the cache, by two BLAS dots (x.x and
    x.ramp); ``hi`` and ``lo`` (B,) are its extremes when the caller has them. The variance is
    E[x^2] - mean^2, exact to about 1e-6 relative while the offset stays within OFFSET_EXACT x
    the AC RMS. A row beyond that (a sensor fault already) is summed again about its mean over
    cache-sized blocks, so that its RMS and trend stay exact: a float32 dot of a large offset
    with the ramp loses the trend to rounding, by an amount that depends on the BLAS kernel of
    the CPU at hand.
    """
    b, n = x.shape
    hi = x.max(axis=1) if hi is None else hi  # (B,) each: the checks already have them
    lo = x.min(axis=1) if lo is None else lo
    ramp = _ramp(n, x.dtype)
    tt = n * (n + 1) / (12.0 * (n - 1))  # ramp @ ramp: sum of t^2 over n points in [-0.5, 0.5]
    mean, var, rise = (np.zeros(b) for _ in range(3))
    for i in range(b):
        row = x[i]
        mean[i] = float(row.sum(dtype=x.dtype)) / n
        var[i] = float(np.dot(row, row)) / n - mean[i] ** 2
        rise[i] = float(np.dot(row, ramp))  # the ramp has zero mean: no centring needed
        if mean[i] ** 2 > OFFSET_EXACT**2 * max(var[i], 0.0):
            var[i], rise[i] = _centred_moments(row, mean[i], ramp)
    return _RowStats(mean, np.sqrt(np.maximum(var, 0.0)), rise / tt, tt / n,
                     hi.astype(np.float64), lo.astype(np.float64))


def _centred_moments(row: np.ndarray, mean: float, ramp: np.ndarray) -> tuple[float, float]:
    """Mean of (row - mean)^2 and the dot of (row - mean) with ``ramp``, over cache-sized blocks
    (float32 dots summed in float64)."""
    power = rise = 0.0
    work = np.empty(min(len(row), numeric.CACHE_BLOCK), row.dtype)
    for start in range(0, len(row), numeric.CACHE_BLOCK):
        block = work[: min(len(row), start + numeric.CACHE_BLOCK) - start]
        np.subtract(row[start : start + len(block)], mean, out=block, casting="unsafe")
        power += float(np.dot(block, block))
        rise += float(np.dot(block, ramp[start : start + len(block)]))
    return power / len(row), rise


@lru_cache(maxsize=8)
def _ramp(n: int, dtype: np.dtype) -> np.ndarray:
    """linspace(-0.5, 0.5, n) in ``dtype``, read-only: the time axis of a window of duration 1."""
    ramp = np.linspace(-0.5, 0.5, n).astype(dtype)
    ramp.flags.writeable = False
    return ramp


def _true_at(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.nonzero of a 2-D mask, cheaper than np.nonzero on wide rows: the flat scan, then
    divmod."""
    return np.divmod(np.flatnonzero(mask), mask.shape[1])


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True in each row of mask (B, M): (row, start, length) of every run.

    Works on the True positions only (few in a live window), not on the whole mask.
    """
    row, col = _true_at(mask)
    if len(row) == 0:
        return row, col, col
    new_run = np.ones(len(row), dtype=bool)
    new_run[1:] = (row[1:] != row[:-1]) | (col[1:] != col[:-1] + 1)
    first = np.flatnonzero(new_run)
    length = np.diff(np.append(first, len(row)))
    return row[first], col[first], length


def _flat(x: np.ndarray, rms: np.ndarray, cfg: QualityThresholds, exp: QualityExpectations):
    # Distinct values of an evenly strided subsample: a few thousand samples of a live channel
    # already hold thousands of values; sorting whole windows costs far more.
    sub = x[:, :: max(1, x.shape[1] // 4096)]
    distinct = 1 + np.count_nonzero(np.diff(np.sort(sub, axis=1), axis=1), axis=1)
    flat = distinct < cfg.flat_min_distinct
    if exp.rms is not None:
        flat |= rms < cfg.flat_rms_ratio * exp.rms
    return flat, [f"{d} distinct values, RMS {r:.3g}" for d, r in zip(distinct, rms, strict=True)]


def _rail_masks(x: np.ndarray, stats: _RowStats, cfg: QualityThresholds) -> np.ndarray:
    """Samples on the top or bottom extreme of their window, (B, N) bool."""
    hi, lo = stats.hi[:, None], stats.lo[:, None]
    tol = cfg.clip_rel_tol * (hi - lo)
    rail = x >= (hi - tol).astype(x.dtype)
    rail |= x <= (lo + tol).astype(x.dtype)
    return rail


def _clipping(rail: np.ndarray, cfg: QualityThresholds):
    row, _, length = _runs(rail)
    in_runs = np.bincount(row, weights=np.where(length >= 2, length, 0), minlength=len(rail))
    return in_runs >= cfg.clip_min_samples, [f"{int(n)} samples on the rail" for n in in_runs]


def _dropout(x: np.ndarray, rail: np.ndarray, fs: float, cfg: QualityThresholds):
    held = x[:, 1:] == x[:, :-1]
    held &= ~rail[:, 1:]  # a run on the rail is clipping
    row, _, length = _runs(held)
    longest = np.zeros(len(x))
    np.maximum.at(longest, row, length + 1)
    need = max(cfg.dropout_min_samples, int(np.ceil(cfg.dropout_min_seconds * fs)))
    return longest >= need, [f"held for {int(n)} samples" for n in longest]


def _spikes(x: np.ndarray, stats: _RowStats, cfg: QualityThresholds):
    # Median and MAD from an evenly strided subsample of ~16k samples: as exact as the test
    # needs, and two partitions of whole 10 s windows cost more than the rest of the checks.
    sub = x[:, :: max(1, x.shape[1] // 16384)]
    centre = median(sub).astype(np.float64)
    sigma = 1.4826 * median(np.abs(sub - centre[:, None].astype(x.dtype))) + 1e-30
    top = np.maximum(stats.hi - centre, centre - stats.lo) / sigma
    count = np.zeros(len(x), int)
    # A struck structure rings: within +-SPIKE_REACH samples some sample keeps a good part of the
    # peak. Only rows whose extreme passes the limit (most rows: none) and only their candidate
    # samples are looked at, so this stays cheap.
    offsets = np.concatenate([-np.arange(1, SPIKE_REACH + 1), np.arange(1, SPIKE_REACH + 1)])
    for i in np.flatnonzero(top > cfg.spike_sigma):
        dev = np.abs(x[i] - x.dtype.type(centre[i]))
        (idx,) = np.nonzero(dev > cfg.spike_sigma * sigma[i])
        around = dev[np.clip(idx[:, None] + offsets, 0, x.shape[1] - 1)].max(axis=1)
        count[i] = np.count_nonzero(around < cfg.spike_neighbour_ratio * dev[idx])
    return count > 0, [f"{c} isolated spikes, max {t:.0f} sigma" for c, t in zip(count, top,
                                                                                 strict=True)]


def _offset_and_drift(stats: _RowStats, cfg: QualityThresholds):
    rms, slope = stats.rms, stats.slope
    # residual power of the line fit = variance - slope^2 x mean(t^2)
    resid_rms = np.sqrt(np.maximum(rms**2 - slope**2 * stats.ramp_power, 0.0)) + 1e-300
    dc, drift = np.abs(stats.mean) / (rms + 1e-300), np.abs(slope) / resid_rms
    return (dc > cfg.dc_max_ratio, [f"mean {d:.1f} x RMS" for d in dc],
            drift > cfg.drift_max_ratio, [f"trend {d:.1f} x RMS" for d in drift])


def spectral_flatness(windows: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """Welch spectral flatness (geometric / arithmetic mean of the PSD), (B,) in (0, 1].

    Example:
        >>> x = np.random.default_rng(0).normal(size=(1, 65536))
        >>> bool(spectral_flatness(x, 1000.0)[0] > 0.8)
        True
    """
    x = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    psd = welch_psd(x, max(64, min(1024, x.shape[1] // 64)))[:, 1:] + 1e-300
    return np.exp(np.log(psd).mean(axis=1)) / psd.mean(axis=1)


def welch_psd(x: np.ndarray, nperseg: int) -> np.ndarray:
    """Welch's PSD of each row up to a constant factor, (B, nperseg // 2 + 1): segments of
    ``nperseg`` at 50 % overlap, each mean-removed and Hann-windowed, periodograms averaged
    (scipy.signal.welch's defaults, without scipy on the serving path).

    Example:
        >>> psd = welch_psd(np.random.default_rng(0).normal(size=(2, 4096)), 256)
        >>> psd.shape, bool(psd[0, 1:-1].std() < 0.3 * psd[0, 1:-1].mean())  # white: flat
        ((2, 129), True)
    """
    step = nperseg - nperseg // 2
    segments = np.lib.stride_tricks.sliding_window_view(x, nperseg, axis=1)[:, ::step]
    segments = segments - segments.mean(axis=2, keepdims=True)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(nperseg) / nperseg)  # periodic
    power = np.abs(fft.rfft(segments * hann, axis=2)) ** 2
    psd = power.mean(axis=1)
    psd[:, 1:(-1 if nperseg % 2 == 0 else None)] *= 2  # one-sided: Nyquist and DC appear once
    return psd


def _loose(x: np.ndarray, rms: np.ndarray, fs: float, cfg, exp: QualityExpectations):
    if exp.rms is None:
        return np.zeros(len(x), bool), [""] * len(x)
    ratio = rms / exp.rms
    risen = ratio >= cfg.loose_rms_ratio
    flat, kurt = np.full(len(x), np.nan), np.full(len(x), np.nan)
    if risen.any():  # the spectrum only matters where the level rose
        flat[risen] = spectral_flatness(x[risen], fs)
        z = (x[risen] - x[risen].mean(axis=1, keepdims=True)) / (rms[risen, None] + 1e-300)
        kurt[risen] = (z**4).mean(axis=1) - 3.0
    loose = risen & (flat >= cfg.loose_min_flatness) & (kurt <= cfg.loose_max_kurtosis)
    notes = [f"RMS {20 * np.log10(r + 1e-300):+.0f} dB vs expected, flatness {f:.2f}, "
             f"kurtosis {k:.1f}" for r, f, k in zip(ratio, flat, kurt, strict=True)]
    return loose, notes


def line_frequency_hz(windows: np.ndarray, sample_rate_hz: float, near_hz: float,
                      search: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Strongest spectral line within +-search x near_hz: its frequency (B,) and prominence (B,) dB.

    Prominence is the peak over the median of the search band. Hann window, 8x zero padding.

    Example:
        >>> t = np.arange(50000) / 5000.0
        >>> f, p = line_frequency_hz(np.sin(2 * np.pi * 12.3 * t)[None], 5000.0, 12.0)
        >>> round(float(f[0]), 1), bool(p[0] > 20)
        (12.3, True)
    """
    from scipy.signal import zoom_fft  # the signal extra: preflight refuses order_lines without

    x = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    n = x.shape[1]
    lo_hz, hi_hz = near_hz * (1 - search), near_hz * (1 + search)
    n_points = int(np.clip(8 * (hi_hz - lo_hz) * n / sample_rate_hz, 64, 8192))  # 8 per FFT bin
    seg = np.abs(zoom_fft((x - x.mean(axis=1, keepdims=True)) * np.hanning(n), [lo_hz, hi_hz],
                          m=n_points, fs=sample_rate_hz, endpoint=True, axis=1))
    freqs = np.linspace(lo_hz, hi_hz, n_points)
    prominence = 20 * np.log10(seg.max(axis=1) / (np.median(seg, axis=1) + 1e-300) + 1e-300)
    return freqs[seg.argmax(axis=1)], prominence


def angle_resample(windows: np.ndarray, rpm_trace: np.ndarray,
                   sample_rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Windows (B, N) resampled to uniform shaft angle; also samples per revolution (B,).

    The angle is the integral of |rpm_trace| (B, N), so a reversal keeps counting forward.

    Example:
        >>> x, per_rev = angle_resample(np.zeros((1, 600)), np.full((1, 600), 60.0), 100.0)
        >>> round(float(per_rev[0]))
        100
    """
    x = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    trace = np.atleast_2d(np.abs(np.asarray(rpm_trace, dtype=np.float64)))
    if trace.shape != x.shape:
        raise ValueError(f"rpm_trace has shape {trace.shape}: pass one speed per sample, "
                         f"shape {x.shape}")
    revs = np.cumsum(trace, axis=1) / (60.0 * sample_rate_hz)
    out, per_rev = np.empty_like(x), (x.shape[1] - 1) / np.maximum(revs[:, -1], 1e-12)
    for i in range(len(x)):
        out[i] = np.interp(np.linspace(revs[i, 0], revs[i, -1], x.shape[1]), revs[i], x[i])
    return out, per_rev


def _rpm_mismatch(x: np.ndarray, fs: float, cfg: QualityThresholds, exp: QualityExpectations,
                  rpm_trace: np.ndarray | None):
    """Order lines where the configured speed puts them? Time axis, or shaft-angle axis."""
    flags, notes = np.zeros(len(x), bool), [""] * len(x)
    if rpm_trace is not None:
        trace = np.atleast_2d(rpm_trace)
        x, rates = angle_resample(x, trace, fs)  # rate: samples per revolution
        speeds, per_unit = np.abs(trace).mean(axis=1), np.ones(len(x))
        # A reversal flips the mesh phase on the traversed-angle axis and splits the line into
        # sidebands 1/(turns between reversals) apart, which misreads the speed of slow rings.
        reverses = (trace.min(axis=1) < 0) & (trace.max(axis=1) > 0)
        rates = np.where(reverses, np.nan, rates)
    elif exp.rpm is not None and exp.constant_speed:
        rates, speeds = np.full(len(x), fs), np.full(len(x), exp.rpm)
        per_unit = speeds / 60.0  # line frequency per order, Hz
    else:
        return flags, notes
    for i, order in ((i, o) for i in range(len(x)) for o in exp.order_lines):
        expected = order * per_unit[i]
        # Under one shaft turn the line's shaft-rate sidebands (+-1 order, e.g. +-0.8 % of a
        # 120-tooth mesh) merge with it and pull the peak: a 2 rpm, 20 s window (0.67 turns)
        # reads it off by more than ``rpm_tolerance``. Sub-bin accuracy beyond that comes from
        # 8x padding of a clean line.
        revolutions = per_unit[i] * x.shape[1] / rates[i]
        if not revolutions >= RPM_MIN_REVOLUTIONS or expected >= 0.45 * rates[i]:
            continue  # (NaN: a reversing window is not judged)
        found, prominence = line_frequency_hz(x[i], rates[i], expected, cfg.rpm_search)
        ratio = float(found[0] / expected)
        if prominence[0] >= cfg.rpm_min_prominence_db:
            notes[i] = f"order {order:g} line says {speeds[i] * ratio:.3g} rpm, not {speeds[i]:.3g}"
            flags[i] |= abs(ratio - 1) > cfg.rpm_tolerance
    return flags, notes


def check(windows: np.ndarray | Sequence[np.ndarray], sample_rate_hz: float,
          expected: QualityExpectations | None = None,
          thresholds: QualityThresholds | None = None,
          rpm_trace: np.ndarray | None = None) -> list[QualityVerdict]:
    """Data-quality verdict for every window of a batch (B, N), a list of windows (N,) or one
    window (N,).

    ``rpm_trace`` (B, N), the configured speed per sample (an encoder), moves the rpm check
    onto the shaft-angle axis, so it works at varying speed too.

    Example:
        >>> x = np.random.default_rng(0).normal(size=20000)
        >>> check(np.clip(x, -1.5, 1.5), 5000.0)[0].faults
        ('clipping',)
    """
    x, _ = numeric.as_rows(windows)  # a list stays a list: stacked a chunk at a time
    fs = float(sample_rate_hz)
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"sample_rate_hz={sample_rate_hz} must be a positive number of Hz")
    exp = expected or QualityExpectations()
    cfg = thresholds or QualityThresholds()
    trace = None if rpm_trace is None else np.atleast_2d(rpm_trace)
    if trace is not None and trace.shape[0] != len(x):
        raise ValueError(f"rpm_trace has shape {trace.shape} for {len(x)} windows: pass one "
                         "speed per sample, shaped like the windows")

    def part(rows: slice) -> list[QualityVerdict]:
        chunk = x[rows] if isinstance(x, np.ndarray) else np.stack(x[rows])
        return _check_rows(chunk, fs, exp, cfg, None if trace is None else trace[rows])

    # rows are independent; chunks of a few rows keep the checks' masks in the cache
    chunks = [slice(a, min(a + QUALITY_ROWS, len(x))) for a in range(0, len(x), QUALITY_ROWS)]
    return [v for verdicts in numeric.map_rows(lambda k: part(chunks[k]), len(chunks))
            for v in verdicts]


def _check_rows(x: np.ndarray, fs: float, exp: QualityExpectations, cfg: QualityThresholds,
                rpm_trace: np.ndarray | None) -> list[QualityVerdict]:
    hi, lo = x.max(axis=1), x.min(axis=1)
    if not (np.isfinite(hi).all() and np.isfinite(lo).all()):  # NaN propagates
        raise ValueError("windows contain NaN/inf: the payload decoder must reject them first")
    peak = np.maximum(hi, -lo).astype(np.float64)
    wild = peak > cfg.range_max_abs
    if wild.any():
        return _out_of_range(x, fs, exp, cfg, rpm_trace, peak)
    stats = _row_stats(x, hi, lo)
    rms = stats.rms
    rail = _rail_masks(x, stats, cfg)
    found = {"flat_line": _flat(x, rms, cfg, exp), "clipping": _clipping(rail, cfg),
             "dropout": _dropout(x, rail, fs, cfg), "spikes": _spikes(x, stats, cfg),
             "loose_mount": _loose(x, rms, fs, cfg, exp),
             "rpm_mismatch": _rpm_mismatch(x, fs, cfg, exp, rpm_trace)}
    dc, dc_note, drift, drift_note = _offset_and_drift(stats, cfg)
    found["dc_offset"], found["drift"] = (dc, dc_note), (drift, drift_note)
    rate_bad = exp.sample_rate_hz is not None and (
        abs(fs / exp.sample_rate_hz - 1) > cfg.sample_rate_rel_tol)
    rate_note = f"payload {fs:g} Hz, configured {exp.sample_rate_hz} Hz"
    found["sample_rate_mismatch"] = (np.full(len(x), rate_bad), [rate_note] * len(x))
    found["out_of_range"] = (wild, [""] * len(x))  # all False here: _out_of_range took the rest
    return [_verdict(found, i) for i in range(len(x))]


def _out_of_range(x: np.ndarray, fs: float, exp: QualityExpectations, cfg: QualityThresholds,
                  rpm_trace: np.ndarray | None, peak: np.ndarray) -> list[QualityVerdict]:
    """Verdicts of rows (B,) some of which have a sample beyond range_max_abs: those are
    out_of_range alone, the others get the full checks."""
    wild = peak > cfg.range_max_abs
    keep = np.flatnonzero(~wild)
    rest = iter(_check_rows(x[keep], fs, exp, cfg, None if rpm_trace is None else
                            rpm_trace[keep]) if len(keep) else [])
    note = (f"beyond +-{cfg.range_max_abs:g}, which no sensor reads in any unit: a corrupt "
            "payload or a float rail")
    return [QualityVerdict(False, ("out_of_range",), f"out_of_range: peak {p:.3g} {note}")
            if w else next(rest) for w, p in zip(wild, peak, strict=True)]


def _verdict(found: dict, i: int) -> QualityVerdict:
    faults = tuple(name for name in QUALITY_FAULTS if found[name][0][i])
    if "flat_line" in faults:  # nothing else is meaningful on a dead channel
        faults = ("flat_line",)
    if "sample_rate_mismatch" in faults:  # a wrong rate moves every line: not the rpm's fault
        faults = tuple(f for f in faults if f != "rpm_mismatch")
    detail = "; ".join(f"{name}: {found[name][1][i]}" for name in faults)
    return QualityVerdict(ok=not faults, faults=faults, detail=detail)
