"""The serving path's FFTs: numpy's (base install) and scipy's (signal extra) give the same
features, the evidence texts the shipped models read included."""

from __future__ import annotations

import numpy as np
import pytest

from slewguard.signal import evidence, features, fft, quality_spectral, textify, textify_evidence
from slewguard.signal.kinematics import preset
from slewguard.signal.scenario import SimulationSpec
from slewguard.signal.simulate import simulate

scipy_fft = pytest.importorskip("scipy.fft", reason="compares scipy's FFT with numpy's")


@pytest.fixture(scope="module")
def windows() -> tuple[list[np.ndarray], float]:
    """Healthy, outer-race and inner-race windows of 1 s at 12 kHz on the CWRU bearing."""
    out = []
    for k, fault in enumerate(("healthy", "outer_race", "inner_race")):
        spec = SimulationSpec(fault=fault, bearing="cwru-6205", rpm=1797.0,
                              sample_rate_hz=12000.0, window_seconds=1.0, severity=1.0)
        out += list(simulate(spec, n_windows=2, seed=k).windows)
    return out, 12000.0


def _with(backend, monkeypatch, compute):
    monkeypatch.setattr(fft, "BACKEND", backend)
    return compute()


def test_numpy_is_the_fallback_and_scipy_the_default(monkeypatch):
    assert fft.backend() == "scipy"  # the test venv has the signal extra
    assert isinstance(fft.BACKEND, fft.PocketFFT)  # scipy's compiled module, loaded directly
    monkeypatch.setattr(fft, "BACKEND", None)
    assert fft.backend() == "numpy"
    x = np.random.default_rng(0).normal(size=(3, 1000)).astype(np.float32)
    assert fft.rfft(x, axis=1).dtype == np.complex64
    np.testing.assert_allclose(fft.rfft(x, 1200, axis=1), scipy_fft.rfft(x, 1200, axis=1),
                               rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(fft.irfft(fft.rfft(x), 1000), x, atol=1e-5)
    z = x[:, :500] + 1j * x[:, 500:]
    np.testing.assert_allclose(fft.ifft(z, 600), scipy_fft.ifft(z, 600), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("real", [True, False])
def test_next_fast_len_is_scipys_so_both_backends_transform_the_same_lengths(real):
    def smooth(m: int) -> bool:
        for p in (2, *(fft.REAL_PRIMES if real else fft.COMPLEX_PRIMES)):
            while m % p == 0:
                m //= p
        return m == 1

    for target in [*range(1, 2000), 102_417, 256_001, 999_999]:
        got = fft.next_fast_len(target, real=real)
        assert got == scipy_fft.next_fast_len(target, real=real), target
        assert got >= target and smooth(got), target
        assert not any(smooth(m) for m in range(target, got)), target


def test_evidence_and_its_texts_agree_between_backends(windows, monkeypatch):
    rows, fs = windows
    bearing = preset("cwru-6205")

    def rows_of():
        return [evidence.extract(x, fs, bearing, 1797.0, speed_uncertainty=0.05) for x in rows]

    with_scipy = _with(scipy_fft, monkeypatch, rows_of)
    with_numpy = _with(None, monkeypatch, rows_of)
    for a, b in zip(with_scipy, with_numpy, strict=True):
        for name in evidence.EVIDENCE_NAMES:
            assert a[name] == pytest.approx(b[name], abs=1e-3), name
        assert textify_evidence.textify(a) == textify_evidence.textify(b)
    assert with_scipy[2]["bpfo_h1_db"] > 10  # the outer-race windows carry their line


@pytest.mark.parametrize("method", ["tree", "stft"])
def test_features_and_texts_agree_between_backends(windows, monkeypatch, method):
    rows, fs = windows
    bearing = preset("cwru-6205")

    def texts():
        table = features.extract(np.stack(rows), fs, bearing, rpm=1797.0, method=method)
        return table, textify.textify_table(table)

    (a, text_a), (b, text_b) = (_with(scipy_fft, monkeypatch, texts),
                                _with(None, monkeypatch, texts))
    np.testing.assert_allclose(np.asarray(a.values), np.asarray(b.values), rtol=1e-3, atol=1e-3)
    assert text_a == text_b


def test_spectral_flatness_is_scipy_welchs(monkeypatch):
    from scipy.signal import welch

    x = np.random.default_rng(2).normal(size=(3, 65536)) + np.sin(np.arange(65536) * 0.3)
    x[1] *= 1 + (np.arange(65536) % 500 < 20)  # impulsive: a lower flatness
    _, psd = welch(x, fs=1000.0, nperseg=1024, axis=1)
    psd = psd[:, 1:] + 1e-300
    expected = np.exp(np.log(psd).mean(axis=1)) / psd.mean(axis=1)
    for backend in (scipy_fft, None):
        monkeypatch.setattr(fft, "BACKEND", backend)
        np.testing.assert_allclose(quality_spectral.spectral_flatness(x, 1000.0), expected,
                                   rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scipys_pocketfft_called_directly_gives_scipy_fft(dtype):
    pocket = fft.PocketFFT(fft.pocketfft_extension())
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 1000)).astype(dtype)
    for n in (None, 640, 1000, 1201):
        for axis in (1, -1):
            got, want = pocket.rfft(x, n, axis=axis), scipy_fft.rfft(x, n, axis=axis)
            assert got.dtype == want.dtype and got.shape == want.shape, (n, axis)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    spectrum = scipy_fft.rfft(x, axis=1)
    for n in (None, 999, 1000, 1500, 600):
        got, want = pocket.irfft(spectrum, n, axis=1), scipy_fft.irfft(spectrum, n, axis=1)
        assert got.dtype == want.dtype and got.shape == want.shape, n
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    z = x[:, :500] + 1j * x[:, 500:]
    for n in (None, 400, 600):
        np.testing.assert_allclose(pocket.ifft(z, n), scipy_fft.ifft(z, n), rtol=1e-5,
                                   atol=1e-6)
    tall = rng.normal(size=(64, 10)).astype(dtype)  # along the first axis, on every core
    np.testing.assert_allclose(pocket.rfft(tall, axis=0, workers=-1),
                               scipy_fft.rfft(tall, axis=0), rtol=1e-5, atol=1e-4)
    assert pocket.rfft(np.arange(8)).dtype == np.complex128  # integers as scipy: in double
    with pytest.raises(TypeError, match="real input"):
        pocket.rfft(z)


def test_the_serving_path_does_not_import_scipy_fft():
    """scipy.fft's import (scipy.special, the array-API layer) is 25 MiB of a daemon's RSS."""
    import subprocess
    import sys

    code = ("import sys; from slewguard.signal import evidence, fft, quality; "
            "import slewguard.service.app; "
            "print(fft.backend(), sorted(m for m in sys.modules if m.startswith('scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split(" ", 1)
    assert out[0] == "scipy" and out[1].strip() == "[]", out


def test_a_scipy_whose_module_cannot_be_loaded_falls_back_to_scipy_fft(monkeypatch):
    monkeypatch.setattr(fft, "pocketfft_extension", lambda: None)
    assert fft.scipy_backend() is scipy_fft
    monkeypatch.undo()
    monkeypatch.setattr(fft.importlib.util, "find_spec", lambda name: None)
    assert fft.pocketfft_extension() is None  # no scipy at all
