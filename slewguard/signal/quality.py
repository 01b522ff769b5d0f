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

This module holds the settings, the verdict and ``check``, which runs the checks a few windows at
a time and names the faults; the checks themselves are in ``quality_waveform`` (from the samples)
and ``quality_spectral`` (loose_mount, rpm_mismatch, and the spectra they read).

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

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from slewguard.signal import numeric
from slewguard.signal.quality_spectral import loose_mount, rpm_mismatch
from slewguard.signal.quality_waveform import (
    clipping,
    dropout,
    flat_line,
    offset_and_drift,
    rail_mask,
    row_stats,
    spikes,
)

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


QUALITY_ROWS = 4  # windows per call of the checks: their (rows, N) masks stay in the cache


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
    stats = row_stats(x, hi, lo)
    rms = stats.rms
    rail = rail_mask(x, stats, cfg)
    found = {"flat_line": flat_line(x, rms, cfg, exp), "clipping": clipping(rail, cfg),
             "dropout": dropout(x, rail, fs, cfg), "spikes": spikes(x, stats, cfg),
             "loose_mount": loose_mount(x, rms, fs, cfg, exp),
             "rpm_mismatch": rpm_mismatch(x, fs, cfg, exp, rpm_trace)}
    dc, dc_note, drift, drift_note = offset_and_drift(stats, cfg)
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
