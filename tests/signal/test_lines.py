"""Defect-line reading: a line in a squared envelope reads high in its own column only, within the
slip tolerance, not when unresolvable, and on the order axis when the speed varies."""

from __future__ import annotations

import numpy as np
import pytest

from slewguard.signal.lines import (
    ENVELOPE_PAD,
    HARMONICS,
    LINE_TOLERANCE,
    LINES,
    SELECT_PAD,
    axis_top_order,
    line_scores,
    line_table,
    low_bins,
    resolvable,
    window_frame,
)

ORDERS = {"ftf": 0.4, "bpfo": 3.6, "bpfi": 5.4, "bsf2": 4.7}
FS = 1000.0  # squared-envelope samples per second (the bins are what count)
COLUMNS = [f"{line}_h{k}" for line in LINES for k in range(1, HARMONICS + 1)]
COLUMNS += ["bpfi_sideband", "shaft"]


def _levels(line_hz: float, seconds: float = 30.0, rpm: float = 60.0, trace=None,
            tracked: bool = True) -> dict[str, float]:
    """line_table of a noisy squared envelope 1 + 0.5 cos(2 pi line) read in its window frame;
    with a ``trace`` the line sits at ``line_hz`` orders of the turning shaft."""
    n = round(seconds * FS)
    revs = np.arange(n) / FS if trace is None else np.cumsum(trace) / 60.0 / FS
    phase = line_hz * revs  # at 60 rpm without a trace: one revolution per second
    noise = np.random.default_rng(0).normal(size=n)
    envelope = 1 + 0.5 * np.cos(2 * np.pi * phase) + 0.2 * noise
    frame = window_frame(rpm, trace if tracked else None, FS, n, ORDERS)
    low = np.fft.rfft(envelope)[None, : frame.n_low + 1]
    table = line_table(frame, frame.spectra(low, ENVELOPE_PAD), ENVELOPE_PAD)[0]
    return dict(zip(COLUMNS, table.tolist(), strict=True))


def test_a_line_reads_high_in_its_column_and_nowhere_else():
    levels = _levels(3.6)  # BPFO at 60 rpm (1 Hz shaft)
    assert levels["bpfo_h1"] > 40
    others = {k: v for k, v in levels.items() if k != "bpfo_h1"}
    assert max(others.values()) < 12, others  # noise: the peak of a search window over its floor


def test_slip_inside_the_tolerance_is_found_outside_it_is_not():
    assert _levels(3.6 * (1 + 0.75 * LINE_TOLERANCE))["bpfo_h1"] > 40
    assert _levels(3.6 * (1 + 3 * LINE_TOLERANCE))["bpfo_h1"] < 12


def test_a_line_with_too_few_periods_in_the_window_reads_zero():
    assert not resolvable(0.4 * 5.0)  # 5 s of a 0.4 Hz cage line: 2 periods
    levels = _levels(0.4, seconds=5.0)
    assert [levels[f"ftf_h{k}"] for k in (1, 2)] == [0.0, 0.0]  # the third has 6 periods
    assert _levels(0.4, seconds=30.0)["ftf_h1"] > 40


def test_line_scores_approximate_line_table_for_band_choice():
    n = round(30 * FS)
    frame = window_frame(60.0, None, FS, n, ORDERS)
    t = np.arange(n) / FS
    rng = np.random.default_rng(1)
    envelopes = [1 + a * np.cos(2 * np.pi * 5.4 * t) + 0.2 * rng.normal(size=n)
                 for a in (0.0, 0.1, 0.5)]
    low = np.fft.rfft(np.array(envelopes), axis=1)[:, : frame.n_low + 1]
    amp = frame.spectra(low, SELECT_PAD)
    n_cols = len(LINES) * HARMONICS
    exact, approx = line_table(frame, amp, SELECT_PAD, n_cols), line_scores(frame, amp,
                                                                            SELECT_PAD, n_cols)
    assert approx.shape == exact.shape == (3, n_cols)
    np.testing.assert_allclose(approx, exact, atol=1.5)
    bpfi = COLUMNS.index("bpfi_h1")
    assert approx[0, bpfi] < approx[1, bpfi] < approx[2, bpfi]  # the order band choice needs


def test_order_tracking_gathers_a_line_that_speed_changes_smear():
    n = round(60 * FS)
    trace = np.linspace(40.0, 80.0, n)  # rpm, the mean is 60
    tracked = _levels(3.6, 60.0, trace=trace)["bpfo_h1"]
    smeared = _levels(3.6, 60.0, trace=trace, tracked=False)["bpfo_h1"]
    assert tracked > 40 and smeared < 12


def test_a_steady_frame_is_built_once_and_places_the_lines_in_hz():
    frame = window_frame(60.0, None, FS, 30_000, ORDERS)
    assert frame is window_frame(60.0, None, FS, 30_000, ORDERS)
    assert frame.scale == pytest.approx(1.0) and frame.revs == pytest.approx(30.0)
    assert frame.targets[:3] == pytest.approx((0.4, 0.8, 1.2))  # ftf harmonics, in orders
    assert frame.targets[-3:] == pytest.approx((4.4, 6.4, 1.0))  # BPFI -+ 1, the shaft
    assert frame.axis(ENVELOPE_PAD)[-1] >= 3 * 5.4  # the axis holds the top harmonic


def test_axis_top_and_low_bins():
    assert axis_top_order(ORDERS) == pytest.approx(1.2 * 3 * 5.4 + 2)
    assert low_bins(10.0, 3.0) == 30 + 8  # 1 / duration bins plus the Hann-leakage margin
