"""The waveform checks of ``quality.check``: row statistics, flat line, clipping, dropout, spikes,
DC offset and drift, each on a batch of windows (B, N) from its samples alone.

Each check returns its flags (B,) bool and one note per window; ``quality.check`` names the
faults and writes the verdicts. ``row_stats`` reads every row once for the statistics the checks
share (mean, AC RMS, linear trend, extremes), without a copy of the batch.

Example:
    >>> import numpy as np
    >>> from slewguard.signal.quality import QualityThresholds
    >>> x = np.random.default_rng(0).normal(size=(2, 20000))
    >>> x[1, 5000:5400] = 0.0
    >>> stats = row_stats(x)
    >>> dropout(x, rail_mask(x, stats, QualityThresholds()), 5000.0, QualityThresholds())[0]
    array([False,  True])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from slewguard.signal import numeric
from slewguard.signal.numeric import median

if TYPE_CHECKING:
    from slewguard.signal.quality import QualityExpectations, QualityThresholds

OFFSET_EXACT = 4.0  # |mean| / AC RMS above which a row's variance is summed about its mean
SPIKE_REACH = 8  # samples either side a spike must stand alone in (a ring-down lasts longer)


@dataclass(frozen=True)
class RowStats:
    """Per-row statistics the checks share, (B,) float64 each."""

    mean: np.ndarray
    rms: np.ndarray  # about the mean (AC RMS)
    slope: np.ndarray  # least-squares rise over the whole window
    ramp_power: float  # mean square of the time axis (about 1 / 12)
    hi: np.ndarray
    lo: np.ndarray


def row_stats(x: np.ndarray, hi: np.ndarray | None = None,
              lo: np.ndarray | None = None) -> RowStats:
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
    return RowStats(mean, np.sqrt(np.maximum(var, 0.0)), rise / tt, tt / n,
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


def flat_line(x: np.ndarray, rms: np.ndarray, cfg: QualityThresholds,
              exp: QualityExpectations) -> tuple[np.ndarray, list[str]]:
    """flat_line: too few distinct values, or RMS far below the expected one."""
    # Distinct values of an evenly strided subsample: a few thousand samples of a live channel
    # already hold thousands of values; sorting whole windows costs far more.
    sub = x[:, :: max(1, x.shape[1] // 4096)]
    distinct = 1 + np.count_nonzero(np.diff(np.sort(sub, axis=1), axis=1), axis=1)
    flat = distinct < cfg.flat_min_distinct
    if exp.rms is not None:
        flat |= rms < cfg.flat_rms_ratio * exp.rms
    return flat, [f"{d} distinct values, RMS {r:.3g}" for d, r in zip(distinct, rms, strict=True)]


def rail_mask(x: np.ndarray, stats: RowStats, cfg: QualityThresholds) -> np.ndarray:
    """Samples on the top or bottom extreme of their window, (B, N) bool."""
    hi, lo = stats.hi[:, None], stats.lo[:, None]
    tol = cfg.clip_rel_tol * (hi - lo)
    rail = x >= (hi - tol).astype(x.dtype)
    rail |= x <= (lo + tol).astype(x.dtype)
    return rail


def clipping(rail: np.ndarray, cfg: QualityThresholds) -> tuple[np.ndarray, list[str]]:
    """clipping: enough samples on the rail (``rail_mask``) in runs of 2 or more."""
    row, _, length = _runs(rail)
    in_runs = np.bincount(row, weights=np.where(length >= 2, length, 0), minlength=len(rail))
    return in_runs >= cfg.clip_min_samples, [f"{int(n)} samples on the rail" for n in in_runs]


def dropout(x: np.ndarray, rail: np.ndarray, fs: float,
            cfg: QualityThresholds) -> tuple[np.ndarray, list[str]]:
    """dropout: a value held long enough, off the rail (a run on the rail is clipping)."""
    held = x[:, 1:] == x[:, :-1]
    held &= ~rail[:, 1:]  # a run on the rail is clipping
    row, _, length = _runs(held)
    longest = np.zeros(len(x))
    np.maximum.at(longest, row, length + 1)
    need = max(cfg.dropout_min_samples, int(np.ceil(cfg.dropout_min_seconds * fs)))
    return longest >= need, [f"held for {int(n)} samples" for n in longest]


def spikes(x: np.ndarray, stats: RowStats,
           cfg: QualityThresholds) -> tuple[np.ndarray, list[str]]:
    """spikes: isolated samples many robust sigmas from the median, with quiet neighbours."""
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


def offset_and_drift(stats: RowStats, cfg: QualityThresholds
                     ) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """dc_offset and drift from the row statistics: (dc flags, notes, drift flags, notes)."""
    rms, slope = stats.rms, stats.slope
    # residual power of the line fit = variance - slope^2 x mean(t^2)
    resid_rms = np.sqrt(np.maximum(rms**2 - slope**2 * stats.ramp_power, 0.0)) + 1e-300
    dc, drift = np.abs(stats.mean) / (rms + 1e-300), np.abs(slope) / resid_rms
    return (dc > cfg.dc_max_ratio, [f"mean {d:.1f} x RMS" for d in dc],
            drift > cfg.drift_max_ratio, [f"trend {d:.1f} x RMS" for d in drift])

