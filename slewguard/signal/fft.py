"""The FFTs of the serving path: ``scipy.fft`` where scipy is installed, ``numpy.fft`` otherwise.

Both are pocketfft, so a window's features agree to rounding either way. scipy's runs the long
real transforms of a window several times faster on arrays fresh from memory (as every window
is), which is why it is preferred; numpy's keeps scipy out of the base install, which the
daemon then serves from with less disk and less memory. ``bench/bench_signal.py --fft numpy``
measures the difference. ``workers`` is scipy's; numpy runs one thread and ignores it.

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

from typing import Any

import numpy as np

try:
    from scipy import fft as _scipy_fft
except ImportError:  # the base install: pip install slewguard without the signal extra
    _scipy_fft = None

BACKEND: Any = _scipy_fft  # module-level so a test or a bench can pin numpy: fft.BACKEND = None


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
