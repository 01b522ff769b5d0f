"""Numeric kernels the signal stages share: an exact median by one partition, the row pool.

``median`` equals ``np.median`` along the last axis bit for bit at less cost: numpy partitions
for both middle elements, this partitions once at the upper one and takes the lower as the
maximum of the half below it (the line floors' medians are a large share of a loaded daemon's
CPU).

``map_rows`` runs a per-window function over a batch on one thread per core, ``map_chunks``
a batched one over one contiguous chunk of rows per core. Windows are
independent and numpy's FFTs, partitions and reductions release the GIL, so the threads run in
parallel; OpenBLAS is held to one thread inside (its own threads on top of the pool's
oversubscribe the cores and multiply the CPU per window). Called from inside the pool it runs
serially instead of waiting on itself.

Example:
    >>> import numpy as np
    >>> a = np.random.default_rng(0).normal(size=(3, 10))
    >>> bool((median(a) == np.median(a, axis=-1)).all())
    True
    >>> map_rows(lambda i: i * i, 4)
    [0, 1, 4, 9]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, TypeVar

import numpy as np
from threadpoolctl import ThreadpoolController

T = TypeVar("T")
CACHE_BLOCK = 1 << 15  # samples per block of a blocked row pass (128 KB of float32)
POOL_PREFIX = "signal-rows"


def median(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=-1)`` exactly (finite input), with one partition instead of two.

    Example:
        >>> median(np.array([[4.0, 1.0, 3.0, 2.0]]))
        array([2.5])
    """
    n = a.shape[-1]
    if n == 0:
        raise ValueError("median of an empty axis: pass at least one value per row")
    half = n // 2
    part = np.partition(a, half, axis=-1)
    upper = part[..., half]
    if n % 2:
        return upper
    return (part[..., :half].max(axis=-1) + upper) / 2


def as_rows(windows: Any, dtype: Any = None, min_samples: int = 64) -> tuple[Any, int]:
    """Windows as (rows, N): a (B, N) array for an array (one window (N,) becomes (1, N)), or a
    list of (N,) arrays for a list of them, kept as they are (a daemon's decoded windows need
    no stacked copy). ``dtype`` None keeps float32 / float64 and makes anything else float64.

    Example:
        >>> rows, n = as_rows([np.zeros(64, np.float32), np.ones(64, np.float32)])
        >>> len(rows), n, rows[1].dtype
        (2, 64, dtype('float32'))
    """
    def cast(a: Any) -> np.ndarray:
        a = np.asarray(a)
        if dtype is not None:
            return a.astype(dtype, copy=False)
        return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)

    if isinstance(windows, list | tuple) and windows and np.ndim(windows[0]) == 1:
        rows = [cast(w) for w in windows]
        shapes = sorted({r.shape for r in rows})
        if len(shapes) != 1 or shapes[0][0] < min_samples:
            raise ValueError(f"windows are {len(rows)} arrays of shapes {shapes[:3]}: pass 1-D "
                             f"windows of one length N >= {min_samples} (or a (B, N) array)")
        return rows, shapes[0][0]
    x = cast(windows)
    x = x[None, :] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < min_samples:
        raise ValueError(f"windows has shape {np.shape(windows)}: pass one window (N,) or a "
                         f"batch (B, N) with N >= {min_samples} samples")
    return x, x.shape[1]


def map_rows(fn: Callable[[int], T], count: int) -> list[T]:
    """``[fn(i) for i in range(count)]`` on the shared pool, one BLAS thread per worker.

    Example:
        >>> map_rows(str, 3)
        ['0', '1', '2']
    """
    if threading.current_thread().name.startswith(POOL_PREFIX):
        return [fn(i) for i in range(count)]
    with _blas().limit(limits=1, user_api="blas"):
        if count < 2 or _workers() < 2:
            return [fn(i) for i in range(count)]
        return list(_pool().map(fn, range(count)))


def map_chunks(fn: Callable[[slice], T], count: int) -> list[T]:
    """``fn`` over ``row_chunks(count)`` on the pool, in order: batched numpy work per core.

    Example:
        >>> sum(map_chunks(lambda rows: rows.stop - rows.start, 9))
        9
    """
    chunks = row_chunks(count)
    return map_rows(lambda k: fn(chunks[k]), len(chunks))


def row_chunks(count: int) -> list[slice]:
    """At most one contiguous slice of ``range(count)`` per pool thread (batched numpy work).

    Example:
        >>> sum(part.stop - part.start for part in row_chunks(5))
        5
    """
    parts = max(1, min(count, _workers()))
    edges = np.linspace(0, count, parts + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def set_threads(threads: int | None) -> None:
    """Size of the row pool: ``threads`` workers, 1 for none (rows run in the calling thread),
    None for one per core (the default).

    One worker per core is fastest for a single process. Where several processes share the
    cores (daemons on a shared subscription), each does better serially: rows handed between
    threads cost more CPU than rows run in place (docs/bench-daemon.md has the measurement).

    Example:
        >>> set_threads(1); map_rows(lambda i: i + 1, 2)
        [1, 2]
        >>> set_threads(None)
    """
    global _threads
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads={threads}: pass a positive number of workers, or None for "
                         "one per core")
    with _pool_lock:
        if (None if threads is None else int(threads)) == _threads:
            return  # unchanged: a pool in use by another thread stays up
        _threads = None if threads is None else int(threads)
        # New rows go to a new pool; a call still mapping on the old one finishes there, and
        # the old pool's idle workers exit once it is garbage (no shutdown race with them).
        _pool.cache_clear()


def _workers() -> int:
    return _threads or os.cpu_count() or 1


_threads: int | None = None
_pool_lock = threading.Lock()


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix=POOL_PREFIX)


@cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()
