"""The band tree: candidate bands, envelope spectra and SK, whitening, and the tree search."""

from __future__ import annotations

import numpy as np
import pytest

from slewguard.signal import features
from slewguard.signal.band_search import SK_NAMES
from slewguard.signal.kinematics import preset
from slewguard.signal.kurtogram import (
    KURTOGRAM_SPLITS,
    TreeSearch,
    band_energies,
    band_tree,
    envelope_bins,
    envelope_power,
    level_bins,
    select_band,
    spectral_kurtosis,
    tree_envelopes,
    whiten,
)


def test_band_tree_levels_are_equal_bands_and_their_half_shifted_copies():
    tree = band_tree(2048, 1.0, 0.0)
    assert {w for _, w, _ in tree} == {2048 // n for n in KURTOGRAM_SPLITS}  # all >= 32 bins
    assert len(tree) == 2 * len(KURTOGRAM_SPLITS) - 1  # Nyquist / 1 has no shifted copy
    for first, width, count in tree:
        shifted = first != 1
        assert first == 1 + (width // 2 if shifted else 0)
        assert count == 2048 // width - shifted and first + count * width <= 2049
    assert {w for _, w, _ in band_tree(1536, 1.0, 0.0)} == {1536 // n for n in KURTOGRAM_SPLITS
                                                            if 1536 // n >= 32}


def test_band_tree_leaves_out_narrow_and_low_bands():
    tree = band_tree(4096, 2.0, min_bandwidth_hz=1000.0, shifted=False, min_start_hz=3000.0)
    assert tree and all(w * 2.0 >= 1000.0 or (f, c) == (1, 1) for f, w, c in tree)
    assert all(f * 2.0 >= 3000.0 for f, w, c in tree if c < 4096 // w)
    assert band_tree(64, 1.0, 1e9, min_start_hz=1e9) == [(33, 32, 1)]  # the fallback: top half


def test_spectral_kurtosis_is_zero_for_noise_minus_one_for_a_tone_large_for_impacts():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(1, 1 << 16)) + 1j * rng.normal(size=(1, 1 << 16))
    assert spectral_kurtosis(np.abs(noise) ** 2)[0] == pytest.approx(0.0, abs=0.05)
    assert spectral_kurtosis(np.ones((1, 100)))[0] == pytest.approx(-1.0)
    impacts = np.zeros(1000)
    impacts[::100] = 1.0
    assert spectral_kurtosis(impacts[None])[0] > 50


def test_envelope_bins_are_the_unnormalised_squared_envelope_spectrum():
    rng = np.random.default_rng(1)
    bins = rng.normal(size=48) + 1j * rng.normal(size=48)
    low, sk = envelope_bins(bins[None], 6)
    for lag in range(7):  # lag f: sum_k X[k] conj(X[k - f]) over pairs inside the band
        assert low[0, lag] == pytest.approx(np.sum(bins[lag:] * np.conj(bins[: 48 - lag])))
    power, n_env = envelope_power(bins[None], 6)
    assert n_env >= 48 + 6 + 1 and sk[0] == pytest.approx(spectral_kurtosis(power)[0])


def test_tree_envelopes_cover_every_band_of_the_tree_in_order():
    spectrum = np.fft.rfft(np.random.default_rng(2).normal(size=8192))
    tree = band_tree(4096, 1.0, 0.0)
    envelopes = tree_envelopes(spectrum, tree, 8)
    expected = [(a + i * w, a + (i + 1) * w) for a, w, c in tree for i in range(c)]
    assert envelopes.bands.tolist() == [list(b) for b in expected]
    assert envelopes.low.shape == (len(expected), 9) and envelopes.sk.shape == (len(expected),)
    first, width, count = tree[3]
    at = sum(c for _, _, c in tree[:3])
    level = envelope_bins(level_bins(spectrum, first, width, count), 8)
    np.testing.assert_allclose(envelopes.sk[at : at + count], level.sk)


def test_select_band_finds_the_resonance_impacts_ring_in():
    fs, n = 20_000.0, 1 << 15
    t = np.arange(n) / fs
    ring = np.exp(-300 * t[:2000]) * np.sin(2 * np.pi * 6000.0 * t[:2000])
    x = np.zeros(n)
    x[::1000] = 1.0
    # noise over the impacts' broadband onsets: only the resonance's band stands out
    x = np.convolve(x, ring)[:n] + 0.3 * np.random.default_rng(3).normal(size=n)
    choice = select_band(np.fft.rfft(x)[None], n, fs)
    low_hz, high_hz = choice.bins[0] * fs / n
    assert low_hz <= 6000.0 <= high_hz <= low_hz + fs / 16 and choice.sk[0] > 3


def test_whiten_flattens_a_coloured_spectrum():
    rng = np.random.default_rng(4)
    coloured = np.fft.rfft(rng.normal(size=(1, 1 << 14))) * np.linspace(10.0, 0.1, (1 << 13) + 1)
    quarters = [np.mean(np.abs(q) ** 2) for q in np.array_split(whiten(coloured)[0], 4)]
    assert max(quarters) / min(quarters) < 1.3  # before: 10 / 0.1 in amplitude, 1e4 in power


def test_band_energies_split_the_power_in_four_equal_bands():
    spectrum = np.zeros((1, 4001), complex)
    spectrum[0, 2500] = 1.0  # a tone in the third quarter
    assert np.argmax(band_energies(spectrum)[0]) == 2
    assert band_energies(spectrum)[0, 2] == pytest.approx(0.0, abs=1e-9)


def test_tree_search_gives_extract_its_band_columns():
    x = np.random.default_rng(5).normal(size=(2, 12_000)).astype(np.float32)
    orders = preset("cwru-6205").orders()
    order_map = {"ftf": orders.ftf_hz, "bpfo": orders.bpfo_hz, "bpfi": orders.bpfi_hz,
                 "bsf2": orders.bsf2_hz}
    centred = x - x.mean(axis=1, keepdims=True)
    columns = TreeSearch().search(centred, np.array([1797.0, 1797.0]), None, order_map, 12000.0)
    table = features.extract(x, 12000.0, preset("cwru-6205"), rpm=1797.0, method="tree")
    names = features.BAND_NAMES + SK_NAMES
    got = np.concatenate([columns.energies, columns.band], axis=1)
    np.testing.assert_allclose(got, table.values[:, [table.names.index(n) for n in names]],
                               rtol=1e-4, atol=1e-4)
