"""Shared numeric kernels: the one-partition median and the row pool."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from slewguard.signal import numeric


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 255), (3, 256), (4, 5, 12), (2, 3, 1)])
def test_median_equals_numpy_bit_for_bit(shape, dtype):
    a = np.random.default_rng(sum(shape)).lognormal(size=shape).astype(dtype)
    a.reshape(-1)[::5] = a.reshape(-1)[0]  # ties
    got, expected = numeric.median(a), np.median(a, axis=-1)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_median_leaves_its_input_alone_and_rejects_an_empty_axis():
    a = np.array([[3.0, 1.0, 2.0, 5.0]])
    kept = a.copy()
    assert numeric.median(a)[0] == 2.5 and np.array_equal(a, kept)
    with pytest.raises(ValueError, match="empty axis"):
        numeric.median(np.zeros((2, 0)))


def test_map_rows_keeps_order_uses_the_pool_and_nests_without_deadlock():
    names: dict[int, str] = {}

    def inner(i: int) -> int:
        names[i] = threading.current_thread().name
        return sum(numeric.map_rows(lambda j: j, i))  # a nested call runs serially

    assert numeric.map_rows(inner, 6) == [sum(range(i)) for i in range(6)]
    assert all(name.startswith(numeric.POOL_PREFIX) for name in names.values())
    assert numeric.map_rows(inner, 0) == []


@pytest.mark.parametrize("count", [0, 1, 2, 3, 17])
def test_row_chunks_cover_every_row_once_in_order(count):
    chunks = numeric.row_chunks(count)
    rows = [i for part in chunks for i in range(count)[part]]
    assert rows == list(range(count))
    assert all(part.stop > part.start for part in chunks) or count == 0


def test_set_threads_one_runs_rows_in_the_calling_thread_and_none_restores_the_pool():
    names: list[str] = []
    try:
        numeric.set_threads(1)
        assert numeric.map_rows(lambda i: names.append(threading.current_thread().name) or i,
                                4) == [0, 1, 2, 3]
        assert set(names) == {threading.current_thread().name}
        assert len(numeric.row_chunks(8)) == 1
        with pytest.raises(ValueError, match="threads=0"):
            numeric.set_threads(0)
    finally:
        numeric.set_threads(None)
    names.clear()
    numeric.map_rows(lambda i: names.append(threading.current_thread().name), 4)
    assert all(name.startswith(numeric.POOL_PREFIX) for name in names)
