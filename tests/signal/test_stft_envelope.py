"""The one-STFT band search: its STFT, bands, spectra and kurtosis against direct computations."""

import numpy as np
import pytest
from scipy import fft as sp_fft

from slewguard.signal import stft_envelope as se


@pytest.mark.parametrize("fs,top", [(25600.0, 644.0), (5000.0, 14.0), (12000.0, 1999.0)])
def test_frame_is_the_longest_power_of_two_whose_bins_hold_the_top_line(fs, top):
    frame = se.frame_length(fs, top)
    assert frame & (frame - 1) == 0
    assert fs / frame >= top and fs / (2 * frame) < top


@pytest.mark.parametrize("n", [4096, 4093])  # a whole number of hops (read in place), or not
@pytest.mark.parametrize("frame", [8, 32, 64, 256])
def test_stft_energy_matches_a_textbook_stft(frame, n, monkeypatch):
    x = np.random.default_rng(0).normal(size=n).astype(np.float32)
    hop = frame // 2
    padded = np.concatenate([np.zeros(hop), x, np.zeros(2 * hop)])
    frames = np.stack([padded[k * hop: k * hop + frame] for k in range(-(-n // hop) + 1)])
    want = np.abs(sp_fft.rfft(frames * np.hanning(frame), axis=1)[:, : frame // 2].T) ** 2
    got = se.stft_energy(x, frame)
    assert got.shape == want.shape and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * want.max())
    monkeypatch.setattr(se, "DFT_MAX_FRAME", 0 if frame <= 64 else 10**6)  # the other path
    np.testing.assert_allclose(se.stft_energy(x, frame), want, rtol=1e-3, atol=1e-3 * want.max())


def test_a_tone_lands_in_its_bin():
    fs, frame = 1000.0, 32
    t = np.arange(8000) / fs
    energy = se.stft_energy(np.sin(2 * np.pi * 250.0 * t).astype(np.float32), frame)
    assert int(energy.mean(axis=1).argmax()) == round(250.0 * frame / fs)


def _whitened(x, frame=32):
    energy = se.stft_energy(x.astype(np.float32), frame)
    return energy / energy.mean(axis=1, keepdims=True)


def test_band_kurtosis_is_zero_for_noise_and_grows_with_width_for_impacts():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=256_000)
    impacts = 0.3 * noise
    impacts[::2000] += 30.0
    bands = [(2, 3), (2, 4), (2, 6), (2, 10), (2, 16)]
    assert np.abs(se.band_kurtosis(_whitened(noise), bands)).max() < 0.1
    sk = se.band_kurtosis(_whitened(impacts), bands)
    assert sk[0] > 20 and (np.diff(sk) > 0).all() and sk[-1] > 4 * sk[0]
    one_bin = _whitened(impacts)[2]  # a one-bin band: the plain kurtosis E e^2 / (E e)^2 - 2
    assert sk[0] == pytest.approx((one_bin**2).mean() / one_bin.mean() ** 2 - 2, rel=1e-3)
    tone = np.sin(2 * np.pi * 0.1 * np.arange(256_000)) + 0.01 * noise
    assert se.band_kurtosis(_whitened(tone), [(3, 4)])[0] == pytest.approx(-1.0, abs=0.05)


@pytest.mark.parametrize("n_bands", [5, 30])  # the band series, or the bins' Gram matrix
def test_band_kurtosis_follows_its_definition_on_either_path(n_bands):
    energy = np.random.default_rng(3).gamma(0.5, size=(16, 4000)).astype(np.float32)
    bands = [(a, b) for a in range(1, 16) for b in range(a + 1, 17)][:: 120 // n_bands][:n_bands]
    assert len(bands) == n_bands
    want = []
    for first, stop in bands:
        e = energy[first:stop].astype(np.float64).sum(axis=0)
        m = stop - first
        m_eff = m * m / (m + 2 * max(m - 1, 0) * 4 / 9 + 2 * max(m - 2, 0) / 36)
        want.append(m_eff * ((e * e).mean() / e.mean() ** 2 - 1) - 1)
    np.testing.assert_allclose(se.band_kurtosis(energy, bands), want, rtol=1e-5, atol=1e-5)


def test_band_spectra_equal_the_spectrum_of_each_bands_summed_energy():
    rng = np.random.default_rng(2)
    energy = rng.exponential(size=(16, 1000)).astype(np.float32)
    bands = se.candidate_bands(16, 3)
    amp = se.band_spectra(energy, bands, n_low=200, n_time=1000)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1000) / 1000)
    for i, (first, stop) in enumerate(bands):
        want = np.abs(np.fft.rfft(energy[first:stop].sum(axis=0) * window))[:201]
        want[:2] = 0
        np.testing.assert_allclose(amp[i], want, rtol=1e-3, atol=1e-3 * want.max())
    direct = np.fft.rfft(energy[bands[0][0]: bands[0][1]].sum(axis=0))[:201]
    np.testing.assert_allclose(se.band_envelope(energy, bands[0], 200, 1000)[0], direct,
                               rtol=1e-3, atol=1e-3 * np.abs(direct).max())


@pytest.mark.parametrize("n_bins,first_bin", [(16, 2), (512, 40), (4, 1)])
def test_candidate_bands_cover_from_the_first_bin_without_duplicates(n_bins, first_bin):
    bands = se.candidate_bands(n_bins, first_bin)
    assert len(bands) == len(set(bands))
    assert all(first_bin <= a < b <= n_bins for a, b in bands)
    assert (first_bin, n_bins) in bands  # the widest band
    widths = {b - a for a, b in bands}
    assert min(widths) >= max(1, n_bins // 64 // 2)
