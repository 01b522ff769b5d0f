"""Defect-line reading on squared-envelope spectra: where each line sits for a window's speed,
and its level in dB over the local noise floor.

A ``Frame`` holds one window's speed frame (shaft revolutions, the envelope axis in Hz at
constant speed or in orders with an rpm trace) and turns squared-envelope bins into amplitude
spectra on that axis (``Frame.spectra``: Hann-windowed, zero-padded; computed order tracking
resamples to uniform shaft angle). ``line_table`` reads every line harmonic, BPFI's shaft
sidebands and the shaft line: the peak within +-LINE_TOLERANCE of the line, in dB over the
median of a +-FLOOR_SPAN neighbourhood, clipped at 0, and 0 for a line with fewer than
MIN_PERIODS periods in the window. ``line_scores`` is its three-call approximation for scoring
many candidate bands at once. ``features`` uses both for its band searches.

Example:
    >>> frame = window_frame(1797.0, None, 12000.0, 12000, {"ftf": 0.4, "bpfo": 3.6,
    ...                                                      "bpfi": 5.4, "bsf2": 4.7})
    >>> round(frame.scale, 2), len(frame.targets)
    (29.95, 15)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache

import numpy as np

from slewguard.signal import fft
from slewguard.signal.numeric import median

LINES = ("ftf", "bpfo", "bpfi", "bsf2")
HARMONICS = 3
LINE_TOLERANCE = 0.02  # +-2 % around each line: slip, and BPFO/BPFI of slewing rings are 6 % apart
MIN_PERIODS = 3.0  # a line needs this many periods inside the window to be resolved
# ... give or take 1 %: a window cut to a rounded length (1.2 s for 1.2009 s) still resolves it
PERIODS_TOLERANCE = 0.01
ENVELOPE_PAD = 4  # zero-padding factor of the envelope FFT (finer line placement)
SELECT_PAD = 2  # ... and of the band-choice pass over every candidate band
FLOOR_SPAN = 0.2  # noise-floor neighbourhood: +-20 % of the line frequency ...
FLOOR_MIN_BINS = 15  # ... and at least this many bins on each side
FLOOR_MAX_POINTS = 256  # floor median over at most this many evenly spaced axis points
LOW_MARGIN_BINS = 8  # squared-envelope bins kept beyond the axis (Hann leakage)


def resolvable(periods: float) -> bool:
    """True when a line with ``periods`` periods in the window can be resolved.

    Example:
        >>> resolvable(2.998), resolvable(2.9)
        (True, False)
    """
    return periods >= MIN_PERIODS * (1 - PERIODS_TOLERANCE)


def _rows_at(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of every row of values (R, L) at fractional indices (P,)."""
    i0 = np.clip(np.floor(positions).astype(int), 0, values.shape[1] - 2)
    frac = np.clip(positions - i0, 0.0, 1.0)
    return values[:, i0] * (1 - frac) + values[:, i0 + 1] * frac


@cache
def _hann(n: int) -> np.ndarray:
    return np.hanning(n).astype(np.float32)


@dataclass
class Frame:
    """One window's speed frame: where lines sit and on which axis its spectra are read."""

    scale: float  # axis units per order: shaft Hz (time axis) or 1 (order axis)
    revs: float  # revolutions the shaft turned during the window
    duration_s: float
    revs_at: np.ndarray | None  # (N,) revolutions at each sample (order tracking) or None
    step: float  # axis spacing at ENVELOPE_PAD: Hz (time) or orders (order tracking)
    n_axis: int
    n_low: int  # native (1 / duration) squared-envelope bins the axis needs, with a margin
    targets: tuple[float, ...] = ()  # line orders: LINES x harmonics, BPFI -+ 1, shaft
    _cells: dict = field(default_factory=dict, repr=False)  # line_cells per pad

    def axis(self, pad: int) -> np.ndarray:
        """Spectral axis of ``spectra(..., pad)``: ENVELOPE_PAD / pad times coarser than step."""
        return np.arange(self._axis_len(pad)) * (self.step * ENVELOPE_PAD / pad)

    def _axis_len(self, pad: int) -> int:
        return int((self.n_axis - 1) * self.step / (self.step * ENVELOPE_PAD / pad)) + 1

    def spectra(self, low: np.ndarray, pad: int) -> np.ndarray:
        """Amplitude spectra on ``axis(pad)`` from squared-envelope bins 0..n_low (R, n_low + 1).

        The bins are turned back into a short (low-passed) squared envelope, Hann-windowed and
        zero-padded by ``pad``; the Hann window's transform falls as 1 / f^3, so bins beyond
        n_low barely leak onto the axis. On the time axis the FFT bins are the axis (no
        interpolation); order tracking resamples to uniform shaft angle first.
        """
        n_out = self._axis_len(pad)
        n_env = fft.next_fast_len((2 if self.revs_at is None else 8) * low.shape[1], real=True)
        low = np.concatenate([np.zeros_like(low[:, :1]), low[:, 1:]], axis=1)  # mean removed
        env = fft.irfft(low, n=n_env, axis=1, workers=-1)
        window = _hann(n_env)
        if self.revs_at is None:  # n_fft = pad x n_env: bin k is k / (pad x duration) Hz
            amp = np.abs(fft.rfft(env * window, n=pad * n_env, axis=1, workers=-1))
            return amp[:, :n_out] * (2 / window.sum())
        # computed order tracking: resample to uniform shaft angle
        spacing = self.duration_s / n_env
        t_full = np.arange(1, len(self.revs_at) + 1) * (self.duration_s / len(self.revs_at))
        at_env = np.interp(np.arange(n_env) * spacing, t_full, self.revs_at)
        grid = np.linspace(0.0, at_env[-1], n_env)
        env = _rows_at(env, np.interp(grid, at_env, np.arange(n_env)))
        env = env - env.mean(axis=1, keepdims=True)
        n_fft = fft.next_fast_len(pad * n_env, real=True)
        amp = np.abs(fft.rfft(env * window, n=n_fft, axis=1, workers=-1)) * 2 / window.sum()
        own_step = 1.0 / (n_fft * grid[1])  # orders per FFT bin
        return _rows_at(amp, np.minimum(self.axis(pad) / own_step, amp.shape[1] - 1))

    def line_cells(self, pad: int) -> list[tuple[int, int, np.ndarray] | None]:
        """Per target of _targets(): peak search slice [lo, hi) and noise-floor indices on
        ``axis(pad)``, or None for a line with too few periods in the window."""
        if pad not in self._cells:
            axis, cell = self.axis(pad), ENVELOPE_PAD * self.step  # about one resolution cell
            self._cells[pad] = [
                _line_cells(axis, o * self.scale, cell) if resolvable(o * self.revs) else None
                for o in self.targets
            ]
        return self._cells[pad]

    def score_cells(self, pad: int, n_cols: int) -> tuple:
        """line_cells(pad)[:n_cols] as flat peak indices, their reduceat starts, floor indices
        (T, FLOOR_MAX_POINTS) and the columns they fill (resolved lines with a floor)."""
        key = ("score", pad, n_cols)
        if key not in self._cells:
            cells = [(j, c) for j, c in enumerate(self.line_cells(pad)[:n_cols]) if c and len(c[2])]
            spans = [np.arange(lo, hi) for _, (lo, hi, _) in cells]
            starts = np.cumsum([0] + [len(a) for a in spans[:-1]])
            pick = np.linspace(0, 1, FLOOR_MAX_POINTS)
            floor = [f[np.round(pick * (len(f) - 1)).astype(int)] for _, (_, _, f) in cells]
            self._cells[key] = (
                np.concatenate(spans) if spans else np.zeros(0, int),
                starts, np.array(floor).reshape(len(cells), FLOOR_MAX_POINTS),
                [j for j, _ in cells],
            )
        return self._cells[key]


def _targets(orders: dict[str, float]) -> tuple[float, ...]:
    """Orders whose level is read: each line's harmonics, BPFI's shaft sidebands, the shaft."""
    lines = [k * orders[line] for line in LINES for k in range(1, HARMONICS + 1)]
    return (*lines, orders["bpfi"] - 1.0, orders["bpfi"] + 1.0, 1.0)


def _line_cells(axis: np.ndarray, target: float, cell: float) -> tuple[int, int, np.ndarray]:
    """Peak search slice within +-LINE_TOLERANCE of target and the local noise-floor indices
    (every k-th, at most FLOOR_MAX_POINTS: the median needs no more). ``cell``: resolution."""
    step = axis[1] - axis[0]
    half_win = max(LINE_TOLERANCE * target, step)
    dist = np.abs(axis - target)
    inside = np.flatnonzero(dist <= half_win)
    reach = max(FLOOR_SPAN * target, FLOOR_MIN_BINS * cell)
    in_floor = (dist <= reach) & (dist > 2 * half_win + 2 * cell) & (axis > 2 * cell)
    floor_at = np.flatnonzero(in_floor)
    floor_at = floor_at[:: max(1, -(-len(floor_at) // FLOOR_MAX_POINTS))]
    return int(inside[0]), int(inside[-1]) + 1, floor_at


def _line_level_db(amp: np.ndarray, cells: tuple[int, int, np.ndarray] | None) -> np.ndarray:
    """Peak in the search slice over the median floor, dB >= 0 (0 when unresolved). -> (R,)."""
    if cells is None:
        return np.zeros(amp.shape[0])
    lo, hi, floor_at = cells
    peak = amp[:, lo:hi].max(axis=1)
    floor = median(amp[:, floor_at]) if len(floor_at) else np.zeros(amp.shape[0])
    with np.errstate(all="ignore"):
        db = 20 * np.log10(peak / floor)
    return np.where(np.isfinite(db), np.maximum(db, 0.0), 0.0)


def line_table(frame: Frame, amp: np.ndarray, pad: int, n_cols: int | None = None) -> np.ndarray:
    """dB over floor of every line harmonic, sideband and shaft line -> (R, len(ENVELOPE_NAMES)).

    ``amp`` is on ``frame.axis(pad)``; ``n_cols`` keeps only the first line-harmonic columns
    (band choice needs no more).
    """
    cells = frame.line_cells(pad)[:n_cols] if n_cols else frame.line_cells(pad)
    cols = [_line_level_db(amp, c) for c in cells]
    if n_cols:
        return np.stack(cols, axis=1)
    sideband = 0.5 * (cols[-3] + cols[-2])
    return np.stack(cols[:-3] + [sideband, cols[-1]], axis=1)


def line_scores(frame: Frame, amp: np.ndarray, pad: int, n_cols: int) -> np.ndarray:
    """Approximate line_table(frame, amp, pad, n_cols) in three numpy calls, for band choice:
    every floor median over exactly FLOOR_MAX_POINTS points (resampled). (R, n_cols)."""
    peak_at, starts, floor_at, cols = frame.score_cells(pad, n_cols)
    out = np.zeros((amp.shape[0], n_cols))
    if not cols:
        return out
    peak = np.maximum.reduceat(amp[:, peak_at], starts, axis=1)
    floor = median(amp[:, floor_at])
    with np.errstate(all="ignore"):
        db = 20 * np.log10(peak / floor)
    out[:, cols] = np.where(np.isfinite(db), np.maximum(db, 0.0), 0.0)
    return out


def low_bins(top_hz: float, duration_s: float) -> int:
    """Native (1 / duration) squared-envelope bins up to top_hz, plus the Hann-leakage margin."""
    return int(np.ceil(top_hz * duration_s)) + LOW_MARGIN_BINS


def window_frame(
    speed: float, trace: np.ndarray | None, fs: float, n: int, orders: dict[str, float]
) -> Frame:
    """One window's Frame; a constant speed's frame (and its line cells) is built once."""
    if trace is None:
        return _steady_frame(float(speed), fs, n, tuple(orders.items()))
    return _new_frame(speed, trace, fs, n, orders)


@lru_cache(maxsize=64)
def _steady_frame(speed: float, fs: float, n: int, orders: tuple) -> Frame:
    return _new_frame(speed, None, fs, n, dict(orders))


def _new_frame(
    speed: float, trace: np.ndarray | None, fs: float, n: int, orders: dict[str, float]
) -> Frame:
    """One window's Frame from its own speed only: time axis in Hz, or order axis (rpm_trace)."""
    duration = n / fs
    max_order = axis_top_order(orders)
    if trace is None:
        fr, revs, revs_at, top_rpm = speed / 60.0, speed / 60.0 * duration, None, speed
    else:
        revs_at = np.cumsum(trace) / 60.0 / fs  # (N,) revolutions turned
        fr, revs, top_rpm = 1.0, revs_at[-1], trace.max()
    step = 1.0 / (ENVELOPE_PAD * revs / fr)  # Hz (time axis) or orders (order axis)
    low = low_bins(max_order * top_rpm / 60.0, duration)
    return Frame(
        fr, revs, duration, revs_at, step, int(max_order * fr / step) + 1, low, _targets(orders)
    )


def axis_top_order(orders: dict[str, float]) -> float:
    """Top of the envelope axis in orders: the highest harmonic's floor reach plus 2 orders."""
    return (1 + FLOOR_SPAN) * HARMONICS * max(orders.values()) + 2.0
