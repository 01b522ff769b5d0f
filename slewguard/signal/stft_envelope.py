"""Band choice and envelope spectrum from one short-time Fourier transform: the "stft" band search
of ``features.extract`` (``StftSearch``), the fast feature chain.

The tree chain (``kurtogram``) demodulates every candidate band of the window's full spectrum: per
tree level an inverse FFT of about the whole spectrum. Here a single STFT does all bands at once
(the idea of Antoni's STFT spectral kurtosis and of fast spectral correlation, Antoni et al.
2017). The frame length is the longest power of two whose bins are still at least as wide as the
highest envelope line (a band narrower than a line's frequency cannot carry it), so a bin's
energy |X(t, f)|^2 over frames (hop half a frame: a frame rate of at least twice the highest
line) is that narrow band's squared envelope. The energy series are whitened (each bin
divided by its mean) and transformed once per bin; a band's squared-envelope spectrum is then the
sum of its bins' spectra (the transform is linear), so every candidate band costs a row of a
matrix product, not an FFT. Bands are scored by defect-line evidence on the native 1 / duration
axis (Hann-windowed) and the winner's spectrum goes through the same Hann-padded line reading as
the tree chain.

What differs from the tree chain: bands are whole STFT bins (fs / frame wide), whitening is per
bin rather than per ~64 Hz, and a band's SK comes from its energy series at frame resolution
(``band_kurtosis``). Cost: one STFT (a matrix product for short frames) and one short FFT per
bin; no full-length FFT at all.

Example:
    >>> frame_length(25600.0, 644.0)
    32
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np

from slewguard.signal import fft, numeric
from slewguard.signal.band_search import (
    N_ENERGY_BANDS,
    BandColumns,
    line_evidence,
    top_envelope_hz,
)
from slewguard.signal.kurtogram import KURTOGRAM_SPLITS
from slewguard.signal.lines import (
    ENVELOPE_PAD,
    HARMONICS,
    LINES,
    SELECT_PAD,
    Frame,
    line_scores,
    line_table,
    window_frame,
)

MIN_FRAME = 4  # extract() guarantees fs >= 6 x the top line, so fs / frame >= top
DFT_MAX_FRAME = 64  # up to this frame a DFT by matrix product beats pocketfft's per-row calls
TONAL_SK = -0.25  # band choice: below this SK a tone carries over half a band's power


def frame_length(sample_rate_hz: float, top_env_hz: float) -> int:
    """Longest power-of-two frame whose bins (fs / frame Hz) are at least top_env_hz wide."""
    longest = sample_rate_hz / max(top_env_hz, 1e-9)
    return max(MIN_FRAME, 1 << int(np.floor(np.log2(max(longest, 1.0)))))


def stft_energy(x: np.ndarray, frame: int) -> np.ndarray:
    """|STFT|^2 of one window (N,), Hann frames at hop frame / 2 -> (bins, frames), bins
    0 .. frame / 2 - 1 (no Nyquist), each bin's series contiguous.

    Frame k covers samples [k hop - hop, k hop + hop) (zero outside the window): N / hop frames
    (N a multiple of the hop), one more otherwise. Short frames (<= DFT_MAX_FRAME) go through
    two matrix products with the windowed DFT's halves (no strided copy, no transpose), longer
    ones through a batched real FFT.
    """
    hop = frame // 2
    n_blocks = -(-len(x) // hop)
    if frame <= DFT_MAX_FRAME:
        # frame k = blocks k - 1 and k of x itself (no padded copy of a window of whole blocks);
        # the first and the last frame see one block, the zero one outside adding nothing
        if len(x) % hop:
            x = np.concatenate([x, np.zeros(n_blocks * hop - len(x), x.dtype)])
        head, tail = _windowed_dft(frame, x.dtype)  # (2 bins, hop) each: real rows, imag rows
        blocks = x.reshape(n_blocks, hop)
        spec = np.empty((frame, n_blocks + 1), x.dtype)  # (2 bins, frames)
        np.matmul(head, blocks.T, out=spec[:, 1:])
        spec[:, 0] = 0
        spec[:, :-1] += tail @ blocks.T
        spec *= spec
        return spec[: frame // 2] + spec[frame // 2 :]
    blocks = np.zeros((n_blocks + 2, hop), x.dtype)  # a zero block before and after
    blocks.reshape(-1)[hop : hop + len(x)] = x
    frames = blocks.reshape(-1)[: (n_blocks + 1) * hop + hop]
    frames = np.lib.stride_tricks.sliding_window_view(frames, frame)[::hop]
    spec = fft.rfft(frames * np.hanning(frame).astype(x.dtype), axis=1)[:, : frame // 2].T
    return np.ascontiguousarray(spec.real) ** 2 + np.ascontiguousarray(spec.imag) ** 2


@cache
def _windowed_dft(frame: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed DFT rows for bins 0 .. frame / 2 - 1, real parts then imaginary parts,
    split into the frame's first and second halves: (frame, frame / 2) each."""
    k = np.arange(frame // 2)[:, None] * np.arange(frame)[None, :]
    dft = np.hanning(frame) * np.exp(-2j * np.pi * k / frame)
    rows = np.concatenate([dft.real, dft.imag]).astype(dtype)
    return np.ascontiguousarray(rows[:, : frame // 2]), np.ascontiguousarray(rows[:, frame // 2 :])


def candidate_bands(n_bins: int, first_bin: int) -> list[tuple[int, int]]:
    """Candidate bands [first, stop) in STFT bins: widths n_bins / n (n in KURTOGRAM_SPLITS, at
    least one bin), starting at multiples of the width, from ``first_bin`` on.

    Example:
        >>> candidate_bands(8, 2)[:3]
        [(2, 8), (2, 4), (4, 8)]
    """
    bands: dict[tuple[int, int], None] = {}  # ordered and unique
    for width in sorted({max(1, n_bins // n) for n in KURTOGRAM_SPLITS}, reverse=True):
        for start in range(0, n_bins, width):
            first, stop = max(start, first_bin), min(start + width, n_bins)
            if stop - first >= max(1, width // 2):
                bands[first, stop] = None
    return list(bands) or [(first_bin, n_bins)]


def band_spectra(
    energy: np.ndarray, bands: list[tuple[int, int]], n_low: int, n_time: int
) -> np.ndarray:
    """Hann-windowed squared-envelope spectra of every band, |.| at 1 / duration bins 0..n_low
    (len(bands), n_low + 1), from whitened energy (bins, frames); ``n_time`` frames span the
    window. Bins 0 and 1 (the mean's main lobe) read 0.

    One real FFT per bin; a band's spectrum is the sum of its bins' (a matrix product).
    """
    window = _hann_periodic(n_time)
    first = min(b for b, _ in bands)  # bins below every band add nothing: not transformed
    per_bin = fft.rfft(energy[first:, :n_time] * window, axis=1)[:, : n_low + 1]
    # Real band weights on the interleaved real and imaginary parts: a real product, a quarter
    # of the complex one's multiplications, same sums.
    member = _membership(tuple(bands), len(energy), energy.dtype)[:, first:]
    parts = member @ np.ascontiguousarray(per_bin).view(energy.dtype)
    amp = np.abs(parts.view(per_bin.dtype))
    amp[:, :2] = 0
    return amp


@lru_cache(maxsize=8)
def _hann_periodic(n: int) -> np.ndarray:
    """Periodic Hann window of n points, float32, read-only (one per window length)."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n, dtype=np.float32) / n)
    window.flags.writeable = False
    return window


@lru_cache(maxsize=64)
def _membership(bands: tuple[tuple[int, int], ...], n_bins: int, dtype: np.dtype) -> np.ndarray:
    """(len(bands), n_bins) 0/1 matrix: row i adds up band i's bins (read-only, cached)."""
    member = np.zeros((len(bands), n_bins), dtype)
    for i, (first, stop) in enumerate(bands):
        member[i, first:stop] = 1
    member.flags.writeable = False
    return member


def band_envelope(energy: np.ndarray, band: tuple[int, int], n_low: int, n_time: int):
    """Squared-envelope bins 0..n_low (1, n_low + 1) of one band, unwindowed, complex."""
    return fft.rfft(energy[band[0] : band[1], :n_time].sum(axis=0))[None, : n_low + 1]


def band_kurtosis(energy: np.ndarray, bands: list[tuple[int, int]]) -> np.ndarray:
    """SK of every band from whitened energy (bins, frames) -> (len(bands),): 0 for Gaussian
    noise, growing with the band's width for broadband impacts, as the SK of a band's
    complex envelope does (the tree's).

    A band's energy series e is the sum of its m bins' (each of mean 1). For noise, e's
    normalised variance Var e / (E e)^2 is 1 / m_eff, where m_eff counts the bins as independent
    after the Hann window's correlation of neighbours (|r1|^2 = 4/9, |r2|^2 = 1/36); SK =
    m_eff x Var e / (E e)^2 - 1 is then 0, and m_eff x (SK of one bin + 1) - 1 for an impact train
    seen alike by every bin.

    With few bins (short frames: fast machines) E e^2 of every band comes from the bins' Gram
    matrix, one (bins x bins) product over the frames, closer to float64 than each band's
    series; with many (long frames: slow slewing rings) the series cost less.
    """
    frames = energy.shape[1]
    mean_bins = energy.sum(axis=1, dtype=np.float64) / frames
    if len(energy) <= 2 * len(bands):
        member = _membership(tuple(bands), len(energy), np.dtype(np.float64))
        gram = (energy @ energy.T).astype(np.float64) / frames  # E[e_k e_l]
        power = np.einsum("bk,bk->b", member @ gram, member)  # no three-operand einsum: slow
    else:
        member = _membership(tuple(bands), len(energy), energy.dtype)
        series = member @ energy  # (bands, frames)
        power = np.einsum("ij,ij->i", series, series).astype(np.float64) / frames
    mean = np.asarray(member, np.float64) @ mean_bins
    m = member.sum(axis=1)
    m_eff = m * m / (m + 2 * np.maximum(m - 1, 0) * 4 / 9 + 2 * np.maximum(m - 2, 0) / 36)
    return m_eff * (power / (mean * mean + 1e-30) - 1.0) - 1.0


def window_columns(x: np.ndarray, fs: float, frame: Frame, top_env_hz: float) -> BandColumns:
    """One window's band energies, band columns and line levels from one STFT: bands of whole
    STFT bins above the highest envelope line, chosen by the same defect-line evidence as the
    tree search."""
    n_frame = frame_length(fs, top_env_hz)
    n_bins = n_frame // 2  # without the Nyquist bin
    # bins whose lower edge is above the highest envelope line (below sit shaft and gear tones)
    first_bin = min(n_bins - 1, int(np.ceil(top_env_hz * n_frame / fs + 0.5)))
    energy = stft_energy(x, n_frame)  # (bins, frames): row k is bin k
    mean = energy.sum(axis=1).astype(np.float64) / energy.shape[1]  # float32 pairwise sums
    quarters = np.array([q.sum() for q in np.array_split(mean[1:], N_ENERGY_BANDS)])
    energies = 10 * np.log10(quarters / (mean[1:].sum() + 1e-300) + 1e-12)
    energy *= (1 / (mean + 1e-30)).astype(np.float32)[:, None]  # whitening: bins weigh the same
    bands = candidate_bands(n_bins, first_bin)
    n_time = round(len(x) / (n_frame // 2))
    n_low = min(frame.n_low, n_time // 2)
    if frame.revs_at is None:  # the native 1 / duration bins are the axis at pad 1
        pad, amp = 1, band_spectra(energy, bands, n_low, n_time)
    else:
        low = np.concatenate([band_envelope(energy, b, n_low, n_time) for b in bands])
        pad, amp = SELECT_PAD, frame.spectra(low, SELECT_PAD)
    score = line_evidence(line_scores(frame, amp, pad, len(LINES) * HARMONICS))
    sk = band_kurtosis(energy, bands)
    # A steady tone (gear mesh) rules a band of SK < TONAL_SK: its beats with its sidebands read
    # as lines (docs/benchmarks.md: what leaving such bands out gained).
    if (sk >= TONAL_SK).any():
        score[sk < TONAL_SK] = -1.0
    i = int(score.argmax())
    low = band_envelope(energy, bands[i], n_low, n_time)
    lines = line_table(frame, frame.spectra(low, ENVELOPE_PAD), ENVELOPE_PAD)[0]
    first, stop = bands[i]
    band = [sk.max(), sk[i], (first + stop - 1) / 2 / n_bins, (stop - first) / n_bins]
    return BandColumns(energies, np.array(band), lines)


class StftSearch:
    """The "stft" band search: every candidate band of a window from one STFT.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(1, 12000)).astype(np.float32)
        >>> orders = {"ftf": 0.4, "bpfo": 3.6, "bpfi": 5.4, "bsf2": 4.7}
        >>> StftSearch().search(x, np.array([1797.0]), None, orders, 12000.0).lines.shape
        (1, 14)
    """

    dtype = np.float32  # no full-length FFT: float32 samples suffice

    def search(self, windows: np.ndarray, speeds: np.ndarray, trace: np.ndarray | None,
               orders: dict[str, float], sample_rate_hz: float) -> BandColumns:
        """See ``band_search.BandSearch``: one window per core."""
        n = windows.shape[1]

        def one(i: int) -> BandColumns:
            row_trace = None if trace is None else trace[i]
            frame = window_frame(speeds[i], row_trace, sample_rate_hz, n, orders)
            return window_columns(windows[i], sample_rate_hz, frame,
                                  top_envelope_hz(speeds[i], row_trace, orders))

        return BandColumns.stack(numeric.map_rows(one, len(windows)))
