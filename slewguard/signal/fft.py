"""The FFTs of the serving path: ``scipy.fft`` where scipy is installed, ``numpy.fft`` otherwise.

Both are pocketfft, so a window's features agree to rounding either way. scipy's runs the long
real transforms of a window several times faster on arrays fresh from memory (as every window
is), which is why it is preferred; numpy's keeps scipy out of the base install, which the
daemon then serves from with less disk and less memory. ``bench/bench_signal.py --fft numpy``
measures the difference. ``workers`` is scipy's; numpy runs one thread and ignores it.

scipy's transforms are called through its compiled pocketfft module, loaded from its file
(``PocketFFT``): importing ``scipy.fft`` itself pulls in scipy.special and the array-API layer,
memory and start time a daemon would pay for three functions (docs/edge-runtime.md has the
memory). Where that module cannot be loaded or does not answer as expected (a scipy that moved
it), the public ``scipy.fft`` is used instead.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    >>> spectrum = rfft(x)
    >>> spectrum.dtype, spectrum.shape, bool(np.allclose(irfft(spectrum, 1000), x, atol=1e-5))
    (dtype('complex64'), (501,), True)
    >>> next_fast_len(1001, real=True), next_fast_len(1001), backend() in ("scipy", "numpy")
    (1024, 1008, True)
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np


class PocketFFT:
    """scipy.fft's ``rfft``, ``irfft`` and ``ifft`` (default normalisation, zero padding or
    truncation to ``n``) on scipy's compiled pocketfft module ``ext``.

    Example:
        >>> ext = pocketfft_extension()
        >>> ext is None or PocketFFT(ext).rfft(np.ones(4, np.float32)).tolist() == [4, 0, 0]
        True
    """

    def __init__(self, ext: Any) -> None:
        self.ext = ext

    def rfft(self, x: Any, n: int | None = None, axis: int = -1,
             workers: int | None = None) -> np.ndarray:
        a = _fit(_real(x), n, axis)
        return self.ext.r2c(a, (axis % a.ndim,), True, 0, None, _threads(workers))

    def irfft(self, x: Any, n: int | None = None, axis: int = -1,
              workers: int | None = None) -> np.ndarray:
        a = _complex(x)
        n = 2 * (a.shape[axis] - 1) if n is None else int(n)
        a = _fit(a, n // 2 + 1, axis)
        return self.ext.c2r(a, (axis % a.ndim,), n, False, 2, None, _threads(workers))

    def ifft(self, x: Any, n: int | None = None, axis: int = -1,
             workers: int | None = None) -> np.ndarray:
        a = _fit(_complex(x), n, axis)
        return self.ext.c2c(a, (axis % a.ndim,), False, 2, None, _threads(workers))


def _real(x: Any) -> np.ndarray:
    a = np.asarray(x)
    if np.iscomplexobj(a):
        raise TypeError("rfft takes real input: pass the real part, or use a complex FFT")
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _complex(x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype in (np.complex64, np.complex128):
        return a
    return a.astype(np.complex64 if a.dtype == np.float32 else np.complex128)


def _fit(a: np.ndarray, n: int | None, axis: int) -> np.ndarray:
    """``a`` cut or zero-padded to ``n`` samples along ``axis`` (scipy's ``n``)."""
    if n is None or n == a.shape[axis]:
        return a
    if n < 1:
        raise ValueError(f"n={n} must be at least 1")
    if n < a.shape[axis]:
        return a[(slice(None),) * (axis % a.ndim) + (slice(0, n),)]
    shape = list(a.shape)
    shape[axis] = n
    out = np.zeros(shape, a.dtype)
    out[(slice(None),) * (axis % a.ndim) + (slice(0, a.shape[axis]),)] = a
    return out


def _threads(workers: int | None) -> int:
    """scipy's ``workers``: None one thread, -1 every core, -2 all but one, ..."""
    if workers is None:
        return 1
    return max(1, workers if workers > 0 else (os.cpu_count() or 1) + 1 + workers)


def pocketfft_extension() -> Any:
    """scipy's compiled pocketfft module, loaded from its file without importing scipy.fft,
    or None (no scipy, or a scipy that keeps it elsewhere or answers otherwise)."""
    try:
        spec = importlib.util.find_spec("scipy")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(folder, "fft", "_pocketfft", "pypocketfft" + suffix)
            if not path.is_file():
                continue
            try:
                name = "scipy.fft._pocketfft.pypocketfft"  # scipy's own name for it
                loader = importlib.machinery.ExtensionFileLoader(name, str(path))
                found = importlib.util.spec_from_file_location(name, path, loader=loader)
                ext = importlib.util.module_from_spec(found)
                loader.exec_module(ext)
                probe = np.array([1.0, 2.0, 0.0, -1.0], np.float32)
                if np.allclose(ext.r2c(probe, (0,), True, 0, None, 1), np.fft.rfft(probe)):
                    return ext
            except Exception:  # noqa: BLE001 - any surprise: the public scipy.fft below
                return None
    return None


def scipy_backend() -> Any:
    """The fastest way to scipy's transforms here, or None without scipy."""
    ext = pocketfft_extension()
    if ext is not None:
        return PocketFFT(ext)
    try:
        from scipy import fft as scipy_fft
    except ImportError:  # the base install: pip install slewguard without the signal extra
        return None
    return scipy_fft


BACKEND: Any = scipy_backend()  # module-level so a test or a bench can pin numpy: = None


def backend() -> str:
    """Which library the transforms below call: "scipy" or "numpy"."""
    return "numpy" if BACKEND is None else "scipy"


def rfft(x: Any, n: int | None = None, axis: int = -1, workers: int | None = None) -> np.ndarray:
    """Real FFT along ``axis`` (float32 in, complex64 out with either library)."""
    if BACKEND is None:
        return np.fft.rfft(x, n, axis)
    return BACKEND.rfft(x, n, axis, workers=workers)


def irfft(x: Any, n: int | None = None, axis: int = -1, workers: int | None = None) -> np.ndarray:
    """Inverse of :func:`rfft`: ``n`` real samples along ``axis``."""
    if BACKEND is None:
        return np.fft.irfft(x, n, axis)
    return BACKEND.irfft(x, n, axis, workers=workers)


def ifft(x: Any, n: int | None = None, axis: int = -1, workers: int | None = None) -> np.ndarray:
    """Inverse complex FFT along ``axis``."""
    if BACKEND is None:
        return np.fft.ifft(x, n, axis)
    return BACKEND.ifft(x, n, axis, workers=workers)


def next_fast_len(target: int, real: bool = False) -> int:
    """The smallest length >= ``target`` pocketfft transforms fast: its radices are 2, 3, 4, 5
    for real and also 7 and 11 for complex transforms (scipy's ``next_fast_len``, so that
    either library transforms the same lengths)."""
    return smooth_len(target, REAL_PRIMES if real else COMPLEX_PRIMES)


REAL_PRIMES = (3, 5)  # odd radices besides powers of two
COMPLEX_PRIMES = (3, 5, 7, 11)


def smooth_len(target: int, primes: tuple[int, ...] = REAL_PRIMES) -> int:
    """The smallest 2^a x (a product of ``primes``) >= ``target``.

    Example:
        >>> smooth_len(7), smooth_len(97), smooth_len(256001), smooth_len(97, COMPLEX_PRIMES)
        (8, 100, 259200, 98)
    """
    target = max(int(target), 1)
    best = 1 << (target - 1).bit_length()  # a power of two always qualifies

    def walk(odd: int, first: int) -> None:
        nonlocal best
        best = min(best, odd << ((target - 1) // odd).bit_length())  # odd x the least 2^a
        for i in range(first, len(primes)):
            if odd * primes[i] < best:
                walk(odd * primes[i], i)

    walk(1, 0)
    return best
