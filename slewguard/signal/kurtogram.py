"""The kurtogram-style band tree: candidate demodulation bands, their envelopes and SK, and the
"tree" band search of ``features.extract`` (``TreeSearch``).

A window's spectrum is cut into equal-width bands (Nyquist / n for n in KURTOGRAM_SPLITS, plus
half-shifted copies). A band's complex envelope is the inverse FFT of its bins alone, at about
the band's own length; its spectral kurtosis E|z|^4 / (E|z|^2)^2 - 2 is 0 for Gaussian noise and
large for impulsive content (Antoni 2007). ``TreeSearch`` pre-whitens each window's spectrum
(``whiten``) and picks the band of the tree with the strongest defect-line evidence;
``select_band`` is the plain maximum-SK choice.

Cost: one real FFT of the window (the caller's), then per tree level one inverse FFT of about
the level's bins: the envelope at w + lags points, not 2 w, since only the envelope-spectrum lags
up to the top line are read and they do not alias. Those low bins become a short squared
envelope, windowed and padded for all bands at once (``lines.Frame.spectra``).

Example:
    >>> [(first, width, count) for first, width, count in band_tree(1024, 1.0, 0.0)][:2]
    [(1, 1024, 1), (1, 512, 2)]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from slewguard.signal import fft, numeric
from slewguard.signal.band_search import (
    N_ENERGY_BANDS,
    BandColumns,
    line_evidence,
    top_envelope_hz,
)
from slewguard.signal.lines import (
    ENVELOPE_PAD,
    HARMONICS,
    LINES,
    SELECT_PAD,
    Frame,
    line_table,
    window_frame,
)

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


class EnvelopePower(NamedTuple):
    power: np.ndarray  # (..., n_env) |complex envelope|^2
    n_env: int  # its points


def envelope_power(bands: np.ndarray, n_low: int) -> EnvelopePower:
    """Band bins (..., w) -> |complex envelope|^2 at n >= w + n_low + 1 points (..., n), and n.

    Lags up to n_low of |z|^2 then do not alias; n is about w, not 2 w.

    Example:
        >>> envelope_power(np.ones((3, 40)), 10).power.shape
        (3, 54)
    """
    w = bands.shape[-1]
    n_env = fft.next_fast_len(max(w + n_low + 1, 2 * n_low + 2))
    z = fft.ifft(bands, n=n_env, axis=-1, workers=-1)
    return EnvelopePower(z.real**2 + z.imag**2, n_env)


def spectral_kurtosis(power: np.ndarray) -> np.ndarray:
    """SK E|z|^4 / (E|z|^2)^2 - 2 of envelopes |z|^2 (..., n) -> (...): 0 for noise."""
    mean = power.mean(axis=-1)
    return (power * power).mean(axis=-1) / (mean * mean + 1e-30) - 2.0


class EnvelopeBins(NamedTuple):
    low: np.ndarray  # (..., n_low + 1) squared-envelope spectrum at lags 0..n_low, complex
    sk: np.ndarray  # (...) spectral kurtosis of each band


def envelope_bins(bands: np.ndarray, n_low: int) -> EnvelopeBins:
    """Band bins (..., w) -> squared-envelope spectrum at lags 0..n_low (..., n_low + 1), SK (...).

    Unnormalised: lag f is sum_k X[k] conj(X[k - f]) over pairs of bins inside the band.

    Example:
        >>> envelope_bins(np.ones((2, 64), complex), 5).low.shape
        (2, 6)
    """
    power, n_env = envelope_power(bands, n_low)
    low = fft.rfft(power, axis=-1, workers=-1)[..., : n_low + 1] * n_env
    return EnvelopeBins(low, spectral_kurtosis(power))


class TreeEnvelopes(NamedTuple):
    low: np.ndarray  # (P, n_low + 1) envelope_bins of every band, in tree order
    sk: np.ndarray  # (P,)
    bands: np.ndarray  # (P, 2) [first, stop) in spectrum bins


def tree_envelopes(row: np.ndarray, tree: list[tuple[int, int, int]], n_low: int) -> TreeEnvelopes:
    """envelope_bins and [first, stop) of every band of the tree, in tree order: one envelope
    FFT pass per tree level.

    Example:
        >>> spectrum = np.fft.rfft(np.random.default_rng(0).normal(size=4096))
        >>> tree_envelopes(spectrum, band_tree(2048, 1.0, 0.0)[:2], 4).bands.tolist()
        [[1, 2049], [1, 1025], [1025, 2049]]
    """
    bands = np.array([(a + i * w, a + (i + 1) * w) for a, w, c in tree for i in range(c)])
    parts = [envelope_bins(level_bins(row, *level), n_low) for level in tree]
    return TreeEnvelopes(np.concatenate([p.low for p in parts]),
                         np.concatenate([p.sk for p in parts]), bands)


def level_bins(row: np.ndarray, first: int, width: int, count: int) -> np.ndarray:
    """The spectrum bins of one level of the band tree, (first, width, count), as (count, width).

    Example:
        >>> level_bins(np.arange(10), 1, 3, 2).tolist()
        [[1, 2, 3], [4, 5, 6]]
    """
    return row[first : first + count * width].reshape(count, width)


class BandChoice(NamedTuple):
    bins: np.ndarray  # (B, 2) [first, stop) in spectrum bins
    sk: np.ndarray  # (B,) the band's spectral kurtosis


def select_band(
    spectrum: np.ndarray, n_samples: int, sample_rate_hz: float, min_bandwidth_hz: float = 0.0
) -> BandChoice:
    """Pick each window's band by spectral kurtosis (a fast-kurtogram equivalent).

    ``spectrum`` is ``rfft`` of the windows (B, M). A band's complex envelope is the inverse FFT
    of its bins; its kurtosis E|c|^4 / (E|c|^2)^2 - 2 is 0 for noise, -1 for a tone. Returns bin
    ranges (B, 2) [first, stop) and the winning kurtosis (B,).

    Example:
        >>> x = 0.01 * np.random.default_rng(0).normal(size=(1, 8192))
        >>> x[0, ::1024] += 1.0  # impulses: a high spectral kurtosis
        >>> choice = select_band(np.fft.rfft(x), 8192, 1000.0)
        >>> choice.bins.shape, bool(choice.sk[0] > 3)
        ((1, 2), True)
    """
    best_sk = np.full(spectrum.shape[0], -np.inf)
    best = np.zeros((spectrum.shape[0], 2), dtype=int)
    tree = band_tree(spectrum.shape[1] - 1, sample_rate_hz / n_samples, min_bandwidth_hz)
    for first, width, count in tree:
        seg = spectrum[:, first : first + count * width].reshape(-1, count, width)
        sk = spectral_kurtosis(envelope_power(seg, 0).power)  # (B, count)
        arg = sk.argmax(axis=1)
        top = sk[np.arange(len(arg)), arg]
        win = top > best_sk
        best_sk[win], best[win, 0] = top[win], first + arg[win] * width
        best[win, 1] = best[win, 0] + width
    return BandChoice(best, best_sk)


def whiten(spectrum: np.ndarray) -> np.ndarray:
    """Spectral pre-whitening: divide by the smoothed magnitude. (B, M) -> (B, M).

    The smooth power is the mean of blocks of M / 200 bins, linearly interpolated between block
    centres (float32; the block sums in float64).

    Example:
        >>> x = np.random.default_rng(0).normal(size=(1, 4096))
        >>> spectrum = np.fft.rfft(x).astype(np.complex64)
        >>> bool(abs(np.mean(np.abs(whiten(spectrum)) ** 2) - 1) < 0.1)
        True
    """
    power = spectrum.real**2 + spectrum.imag**2
    b, m = power.shape
    width = max(8, m // 200)
    k = m // width
    if k < 2:
        return spectrum / np.sqrt(power.mean(axis=1, keepdims=True) + np.float32(1e-37))
    means = power[:, : k * width].reshape(b, k, width).mean(axis=2, dtype=np.float64)
    means = (means + 1e-30 * means.mean(axis=1, keepdims=True) + 1e-37).astype(np.float32)
    pos = np.clip((np.arange(m) + 0.5) / width - 0.5, 0, k - 1)
    left = np.minimum(pos.astype(np.intp), k - 2)
    frac = (pos - left).astype(np.float32)
    smooth = means[:, left] * (1 - frac) + means[:, left + 1] * frac
    return spectrum * (1 / np.sqrt(smooth))


def band_energies(spectrum: np.ndarray) -> np.ndarray:
    """Energy of N_ENERGY_BANDS equal bands relative to the total, dB. (B, M) -> (B, 4).

    Example:
        >>> band_energies(np.ones((1, 9))).round(2).tolist()
        [[-6.02, -6.02, -6.02, -6.02]]
    """
    power = np.abs(spectrum[:, 1:]).astype(np.float64) ** 2
    edges = np.linspace(0, power.shape[1], N_ENERGY_BANDS + 1).astype(int)
    bands = np.stack(
        [power[:, a:b].sum(axis=1) for a, b in zip(edges[:-1], edges[1:], strict=True)], axis=1
    )
    return 10 * np.log10(bands / (power.sum(axis=1, keepdims=True) + 1e-300) + 1e-12)


class WindowBand(NamedTuple):
    """One window's chosen band: its line table, [first, stop) bins, its SK and the tree's max."""

    lines: np.ndarray  # (len(ENVELOPE_NAMES),) dB over the floor
    bins: tuple[int, int]
    band_sk: float
    sk_max: float


def window_band(row: np.ndarray, frame: Frame, tree: list[tuple[int, int, int]]) -> WindowBand:
    """Choose one window's band by defect-line evidence and read its lines.

    ``row`` is the window's whitened spectrum; the band is the first (in tree order) with the
    largest sum of h1..h3 levels of one line.
    """
    low, sk, bands = tree_envelopes(row, tree, frame.n_low)
    table = line_table(frame, frame.spectra(low, SELECT_PAD), SELECT_PAD, len(LINES) * HARMONICS)
    i = int(line_evidence(table).argmax())
    lines = line_table(frame, frame.spectra(low[i : i + 1], ENVELOPE_PAD), ENVELOPE_PAD)[0]
    return WindowBand(lines, (int(bands[i, 0]), int(bands[i, 1])), float(sk[i]), float(sk.max()))


class TreeSearch:
    """The "tree" band search: the kurtogram tree over each window's whitened full spectrum.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(1, 12000)).astype(np.float32)
        >>> orders = {"ftf": 0.4, "bpfo": 3.6, "bpfi": 5.4, "bsf2": 4.7}
        >>> TreeSearch().search(x, np.array([1797.0]), None, orders, 12000.0).band.shape
        (1, 4)
    """

    dtype = np.float64  # windows are read in float64, centred into float32

    def search(self, windows: np.ndarray, speeds: np.ndarray, trace: np.ndarray | None,
               orders: dict[str, float], sample_rate_hz: float) -> BandColumns:
        """See ``band_search.BandSearch``: one real FFT of the batch, then one window per core."""
        n = windows.shape[1]
        raw = fft.rfft(windows, axis=1, workers=-1)
        white = whiten(raw)
        n_bins = white.shape[1] - 1

        def one(i: int) -> WindowBand:
            # Bands start above the highest envelope line and are 1.5 x as wide; unshifted
            # only: fewer candidates keep the max-over-bands bias of healthy windows low.
            top_env_hz = top_envelope_hz(speeds[i], None if trace is None else trace[i], orders)
            tree = band_tree(n_bins, sample_rate_hz / n, 1.5 * top_env_hz, shifted=False,
                             min_start_hz=top_env_hz)
            frame = window_frame(speeds[i], None if trace is None else trace[i], sample_rate_hz,
                                 n, orders)
            return window_band(white[i], frame, tree)

        rows = numeric.map_rows(one, len(white))  # windows are independent: one thread per core
        sk_max = np.array([r.sk_max for r in rows], np.float64)
        band_sk = np.array([r.band_sk for r in rows], np.float64)
        bins = np.array([r.bins for r in rows], np.float64)
        band = [sk_max, band_sk, bins.mean(1) / n_bins, np.diff(bins)[:, 0] / n_bins]
        return BandColumns(band_energies(raw), np.stack(band, axis=1),
                           np.stack([r.lines for r in rows]))
