"""The spectral checks of ``quality.check`` and the spectra they read: loose_mount (Welch
spectral flatness) and rpm_mismatch (where the known shaft-order lines sit).

``welch_psd`` and ``spectral_flatness`` need numpy only (the serving path's ``fft``);
``line_frequency_hz`` imports ``scipy.signal.zoom_fft`` when called (the signal extra: preflight
refuses ``order_lines`` without it). ``angle_resample`` puts a window on the shaft-angle axis, so
that a shaft-order line stays a line at varying speed.

Example:
    >>> import numpy as np
    >>> t = np.arange(65536) / 1000.0
    >>> tone = np.sin(2 * np.pi * 50.0 * t)[None]
    >>> bool(spectral_flatness(tone, 1000.0)[0] < 0.1)  # one line: far from flat
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from slewguard.signal import fft

if TYPE_CHECKING:
    from slewguard.signal.quality import QualityExpectations, QualityThresholds

RPM_MIN_REVOLUTIONS = 1.0  # shaft turns a window needs before its rpm is judged


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


def loose_mount(x: np.ndarray, rms: np.ndarray, fs: float, cfg: QualityThresholds,
                exp: QualityExpectations) -> tuple[np.ndarray, list[str]]:
    """loose_mount: RMS well over the expected one, a flat spectrum and no impulsiveness."""
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


def rpm_mismatch(x: np.ndarray, fs: float, cfg: QualityThresholds, exp: QualityExpectations,
                 rpm_trace: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
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

