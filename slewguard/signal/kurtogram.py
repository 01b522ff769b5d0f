"""The kurtogram-style band tree: candidate demodulation bands, their envelopes and SK.

A window's spectrum is cut into equal-width bands (Nyquist / n for n in KURTOGRAM_SPLITS, plus
half-shifted copies). A band's complex envelope is the inverse FFT of its bins alone, at about
the band's own length; its spectral kurtosis E|z|^4 / (E|z|^2)^2 - 2 is 0 for Gaussian noise and
large for impulsive content (Antoni 2007). ``features.extract`` uses the tree to find the band
with the strongest defect-line evidence; ``select_band`` is the plain maximum-SK choice.

Cost: one real FFT of the window (the caller's), then per tree level one inverse FFT of about
the level's bins: the envelope at w + lags points, not 2 w, since only the envelope-spectrum lags
up to the top line are read and they do not alias. Those low bins become a short squared
envelope, windowed and padded for all bands at once (``lines.Frame.spectra``).

Example:
    >>> [(first, width, count) for first, width, count in band_tree(1024, 1.0, 0.0)][:2]
    [(1, 1024, 1), (1, 512, 2)]
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

# Candidate band counts (band width = Nyquist / n); n > 1 also half-shifted.
KURTOGRAM_SPLITS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def band_tree(
    n_bins: int, bin_hz: float, min_bandwidth_hz: float, shifted: bool = True, min_start_hz=0.0
) -> list[tuple[int, int, int]]:
    """Kurtogram candidates as (first bin, width in bins, count): equal bands, half-shifted too.

    Bands narrower than ``min_bandwidth_hz`` or starting below ``min_start_hz`` are left out.
    """
    tree = []
    for n_split in KURTOGRAM_SPLITS:
        width = n_bins // n_split
        if n_split > 1 and (width < 32 or width * bin_hz < min_bandwidth_hz):
            continue
        for offset in (0, width // 2) if n_split > 1 and shifted else (0,):
            first, count = 1 + offset, n_split - (1 if offset else 0)
            skip = max(0, int(np.ceil((min_start_hz / bin_hz - first) / width)))
            if count > skip:
                tree.append((first + skip * width, width, count - skip))
    return tree or [(1 + n_bins // 2, n_bins // 2, 1)]


def envelope_power(bands: np.ndarray, n_low: int) -> tuple[np.ndarray, int]:
    """Band bins (..., w) -> |complex envelope|^2 at n >= w + n_low + 1 points (..., n), and n.

    Lags up to n_low of |z|^2 then do not alias; n is about w, not 2 w.
    """
    w = bands.shape[-1]
    n_env = sp_fft.next_fast_len(max(w + n_low + 1, 2 * n_low + 2))
    z = sp_fft.ifft(bands, n=n_env, axis=-1, workers=-1)
    return z.real**2 + z.imag**2, n_env


def spectral_kurtosis(power: np.ndarray) -> np.ndarray:
    """SK E|z|^4 / (E|z|^2)^2 - 2 of envelopes |z|^2 (..., n) -> (...): 0 for noise."""
    mean = power.mean(axis=-1)
    return (power * power).mean(axis=-1) / (mean * mean + 1e-30) - 2.0


def envelope_bins(bands: np.ndarray, n_low: int) -> tuple[np.ndarray, np.ndarray]:
    """Band bins (..., w) -> squared-envelope spectrum at lags 0..n_low (..., n_low + 1), SK (...).

    Unnormalised: lag f is sum_k X[k] conj(X[k - f]) over pairs of bins inside the band.
    """
    power, n_env = envelope_power(bands, n_low)
    low = sp_fft.rfft(power, axis=-1, workers=-1)[..., : n_low + 1] * n_env
    return low, spectral_kurtosis(power)


def tree_envelopes(
    row: np.ndarray, tree: list[tuple[int, int, int]], n_low: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """envelope_bins (P, n_low + 1), SK (P,) and [first, stop) (P, 2) of every band of the tree,
    in tree order: one envelope FFT pass per tree level."""
    bands = np.array([(a + i * w, a + (i + 1) * w) for a, w, c in tree for i in range(c)])
    parts = [envelope_bins(band_levels(row, *level), n_low) for level in tree]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), bands


def band_levels(row: np.ndarray, first: int, width: int, count: int) -> np.ndarray:
    """One level of the band tree as (count, width) bins."""
    return row[first : first + count * width].reshape(count, width)


def select_band(
    spectrum: np.ndarray, n_samples: int, sample_rate_hz: float, min_bandwidth_hz: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Pick each window's band by spectral kurtosis (a fast-kurtogram equivalent).

    ``spectrum`` is ``rfft`` of the windows (B, M). A band's complex envelope is the inverse FFT
    of its bins; its kurtosis E|c|^4 / (E|c|^2)^2 - 2 is 0 for noise, -1 for a tone. Returns bin
    ranges (B, 2) [first, stop) and the winning kurtosis (B,).

    Example:
        >>> x = 0.01 * np.random.default_rng(0).normal(size=(1, 8192))
        >>> x[0, ::1024] += 1.0  # impulses: a high spectral kurtosis
        >>> bins, sk = select_band(np.fft.rfft(x), 8192, 1000.0)
        >>> bins.shape, bool(sk[0] > 3)
        ((1, 2), True)
    """
    best_sk = np.full(spectrum.shape[0], -np.inf)
    best = np.zeros((spectrum.shape[0], 2), dtype=int)
    tree = band_tree(spectrum.shape[1] - 1, sample_rate_hz / n_samples, min_bandwidth_hz)
    for first, width, count in tree:
        seg = spectrum[:, first : first + count * width].reshape(-1, count, width)
        sk = spectral_kurtosis(envelope_power(seg, 0)[0])  # (B, count)
        arg = sk.argmax(axis=1)
        top = sk[np.arange(len(arg)), arg]
        win = top > best_sk
        best_sk[win], best[win, 0] = top[win], first + arg[win] * width
        best[win, 1] = best[win, 0] + width
    return best, best_sk
