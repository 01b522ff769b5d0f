"""The band-search interface: how ``features.extract`` finds each window's demodulation band.

A band search takes the mean-removed windows and their speeds and returns, per window, the
four band energies, the band columns (``SK_NAMES``) and the defect-line levels read in the band
it chose (``BandColumns``). Two implement it, each in its own module and registered in
``features.BAND_SEARCHES`` under its key: "tree" (``kurtogram.TreeSearch``, the reference) and
"stft" (``stft_envelope.StftSearch``). Both choose the band by defect-line evidence
(``line_evidence``) among bands that start above the highest envelope line (``top_envelope_hz``).

Example:
    >>> columns = BandColumns.stack([BandColumns(np.zeros(4), np.ones(4), np.zeros(16))] * 3)
    >>> columns.energies.shape, columns.band.shape, columns.lines.shape
    ((3, 4), (3, 4), (3, 16))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np

from slewguard.signal.lines import HARMONICS, LINES, axis_top_order

N_ENERGY_BANDS = 4  # equal bands from 0 to Nyquist
SK_NAMES = ("sk_max", "band_sk", "band_centre_rel", "band_width_rel")


class BandColumns(NamedTuple):
    """A band search's features: per window (1-D fields) or stacked per batch (B, ...)."""

    energies: np.ndarray  # (..., N_ENERGY_BANDS) dB relative to the total
    band: np.ndarray  # (..., len(SK_NAMES)): max SK, chosen band's SK, centre and width / Nyquist
    lines: np.ndarray  # (..., len(ENVELOPE_NAMES)) dB over the local floor

    @classmethod
    def stack(cls, rows: Sequence[BandColumns]) -> BandColumns:
        """The windows' columns stacked into one batch."""
        return cls(*(np.stack(field) for field in zip(*rows, strict=True)))


class BandSearch(Protocol):
    """Finds each window's band and reads its features; ``dtype`` is the samples' float type."""

    dtype: type

    def search(self, windows: np.ndarray, speeds: np.ndarray, trace: np.ndarray | None,
               orders: dict[str, float], sample_rate_hz: float) -> BandColumns:
        """Columns of mean-removed ``windows`` (B, N) float32 at ``speeds`` (B,) rpm, with the
        |rpm| ``trace`` (B, N) or None; ``orders`` are the defect lines in orders."""
        ...


def top_envelope_hz(speed: float, trace: np.ndarray | None, orders: dict[str, float]) -> float:
    """Top of one window's envelope axis in Hz: candidate bands start above it (below it sit
    shaft and gear tones, not resonances). With a trace, at its 95th-percentile speed.

    Example:
        >>> orders = {"ftf": 0.4, "bpfo": 3.6, "bpfi": 5.4, "bsf2": 4.7}
        >>> round(top_envelope_hz(60.0, None, orders), 2)
        21.44
    """
    peak_rpm = speed if trace is None else np.percentile(trace, 95)
    return axis_top_order(orders) * peak_rpm / 60.0


def line_evidence(table: np.ndarray) -> np.ndarray:
    """Defect-line evidence of each candidate band: the largest sum of h1..h3 levels of one line.

    ``table`` holds the line-harmonic levels (bands, len(LINES) x HARMONICS) -> (bands,).

    Example:
        >>> line_evidence(np.arange(24.0).reshape(2, 12))
        array([30., 66.])
    """
    return table.reshape(len(table), len(LINES), HARMONICS).sum(axis=2).max(axis=1)
