"""Binary and JSON window payloads: round trips, every error reason, and random garbage."""

from __future__ import annotations

import json
import math
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from slewguard.service import payload as pl
from slewguard.service.payload import (
    PayloadError,
    Window,
    decode,
    encode_binary,
    encode_json,
    restamp,
)


def make_window(n: int = 2048, rpm: float | None = 6.0, seed: int = 0, **kw) -> Window:
    rng = np.random.default_rng(seed)
    fields = dict(sensor_id="crane-1.slew:s1", start_ns=1_700_000_000_123_456_789,
                  sample_rate_hz=5000.0, rpm=rpm, seq=42, unit="g",
                  samples=(rng.normal(size=n) * 3).astype(np.float32))
    fields.update(kw)
    return Window(**fields)


def reseal(msg: bytes) -> bytes:
    """Recompute the trailing CRC32 after editing a binary message."""
    body = msg[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def assert_same_header(a: Window, b: Window) -> None:
    assert (a.sensor_id, a.start_ns, a.sample_rate_hz, a.seq, a.unit) == (
        b.sensor_id, b.start_ns, b.sample_rate_hz, b.seq, b.unit)
    assert a.rpm == b.rpm or (a.rpm is None and b.rpm is None)


@pytest.mark.parametrize("rpm", [6.0, -3.5, None])
def test_float32_and_json_round_trip_exactly(rpm):
    w = make_window(rpm=rpm)
    for msg in (encode_binary(w, "float32"), encode_json(w)):
        got = decode(msg)
        assert_same_header(got, w)
        assert got.samples.dtype == np.float32
        np.testing.assert_array_equal(got.samples, w.samples)


def test_int16_round_trip_error_is_at_most_half_a_step():
    w = make_window(n=10_000)
    msg = encode_binary(w, "int16")
    got = decode(msg)
    assert_same_header(got, w)
    scale = struct.unpack_from("<d", msg, pl.HEAD.size + len(w.sensor_id) + 16)[0]
    assert scale == pytest.approx(np.abs(w.samples).max() / pl.INT16_MAX)
    err = np.abs(got.samples.astype(np.float64) - w.samples)
    float32_rounding = np.abs(w.samples) * 2.0**-24  # the decoded value is stored as float32
    assert np.all(err <= scale / 2 + float32_rounding)
    assert err.max() > scale / 4  # it really was quantised
    assert len(msg) == pl.HEAD.size + len(w.sensor_id) + pl.BODY.size + 2 * 10_000 + 4


def test_int16_all_zero_window_survives():
    w = make_window(n=16, samples=np.zeros(16, np.float32))
    np.testing.assert_array_equal(decode(encode_binary(w)).samples, np.zeros(16))


def test_nan_rpm_in_binary_means_absent_and_json_null_too():
    w = make_window(rpm=None)
    assert decode(encode_binary(w)).rpm is None
    doc = json.loads(encode_json(w))
    assert doc["rpm"] is None
    doc["rpm"] = float("nan")
    assert decode(json.dumps(doc).encode()).rpm is None


def bad_binary_cases() -> dict[str, bytes]:
    good = encode_binary(make_window(n=64), "float32")
    id_len = len(make_window().sensor_id)
    body_at = pl.HEAD.size + id_len

    def patch(offset: int, fmt: str, value) -> bytes:
        b = bytearray(good)
        struct.pack_into(fmt, b, offset, value)
        return reseal(bytes(b))

    return {
        "too_short": good[:20],
        "bad_magic": b"XXXX" + good[4:],
        "unsupported_version": patch(4, "<B", 9),
        "checksum": good[:-8] + bytes(4) + good[-4:],
        "bad_header": patch(5, "<B", 7),
        "length_mismatch": reseal(good[:-8] + good[-4:]),
        "bad_sensor_id": patch(8, "<H", 0),
        "bad_sample_rate": patch(body_at + 8, "<d", 100.0),
        "bad_rpm": patch(body_at + 24, "<d", math.inf),
        "too_many_samples": patch(body_at + 40, "<I", pl.MAX_SAMPLES + 1),
        "empty": reseal(good[: body_at + 40] + struct.pack("<I", 0) + bytes(4)),
        "nan_samples": reseal(good[:-8] + struct.pack("<f", math.nan) + bytes(4)),
    }


@pytest.mark.parametrize("reason", sorted(bad_binary_cases()))
def test_every_binary_error_reason(reason):
    with pytest.raises(PayloadError) as exc:
        decode(bad_binary_cases()[reason])
    assert exc.value.reason == reason
    assert isinstance(exc.value, ValueError)


def test_scale_must_be_positive():
    w = make_window(n=8)
    b = bytearray(encode_binary(w, "int16"))
    struct.pack_into("<d", b, pl.HEAD.size + len(w.sensor_id) + 16, -1.0)
    with pytest.raises(PayloadError, match="scale=-1.0") as exc:
        decode(reseal(bytes(b)))
    assert exc.value.reason == "bad_header"


def json_case(**changes) -> bytes:
    doc = json.loads(encode_json(make_window(n=8)))
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v != "<drop>"}).encode()


@pytest.mark.parametrize("reason,message", [
    ("json_invalid", b'{"sensor_id": "s1", '),
    ("schema", json_case(samples="<drop>")),
    ("schema", json_case(start_ns=1.5)),
    ("schema", json_case(extra_key=1)),
    ("schema", json_case(seq=2**70)),
    ("bad_sensor_id", json_case(sensor_id="plant/+/#")),
    ("bad_sensor_id", json_case(sensor_id="x" * 200)),
    ("bad_timestamp", json_case(start_ns=-1)),
    ("bad_sample_rate", json_case(sample_rate_hz=60_000)),
    ("bad_sample_rate", json_case(sample_rate_hz=float("nan"))),
    ("bad_rpm", json_case(rpm=float("inf"))),
    ("bad_header", json_case(unit="furlongs")),
    ("empty", json_case(samples=[])),
    ("nan_samples", json_case(samples=[1.0, float("nan"), 2.0])),
    ("nan_samples", json_case(samples=[1e300])),
    ("bad_magic", b"hello world"),
    ("too_short", b"{"[:0]),
])
def test_every_json_error_reason(reason, message):
    with pytest.raises(PayloadError) as exc:
        decode(message)
    assert exc.value.reason == reason


def test_error_message_names_the_bad_value():
    with pytest.raises(PayloadError, match="sample_rate_hz=60000.0"):
        decode(json_case(sample_rate_hz=60_000))
    with pytest.raises(PayloadError, match="first at index 1"):
        decode(json_case(samples=[1.0, float("nan")]))


def test_every_reason_is_reachable_and_labels_are_fixed():
    covered = set(bad_binary_cases()) | {"json_invalid", "schema", "bad_timestamp", "too_large"}
    assert covered == set(pl.REASONS)
    with pytest.raises(ValueError, match="not one of"):
        PayloadError("made_up", "x")


def test_encoders_reject_bad_windows_and_formats():
    with pytest.raises(PayloadError) as exc:
        encode_binary(make_window(samples=np.array([np.inf], np.float32)))
    assert exc.value.reason == "nan_samples"
    with pytest.raises(ValueError, match="sample_format='int8'"):
        encode_binary(make_window(), "int8")


def test_random_bytes_raise_only_payload_errors():
    rng = np.random.default_rng(1)
    good = encode_binary(make_window(n=32), "int16")
    outcomes = {"ok": 0}
    for i in range(3000):
        kind = i % 3
        if kind == 0:
            msg = rng.bytes(int(rng.integers(0, 200)))
        elif kind == 1:  # flip a few bytes of a valid message, keep the CRC valid half the time
            b = bytearray(good)
            for pos in rng.integers(0, len(b) - 4, size=int(rng.integers(1, 4))):
                b[pos] = int(rng.integers(0, 256))
            msg = reseal(bytes(b)) if i % 2 else bytes(b)
        else:  # truncated or garbled JSON
            text = encode_json(make_window(n=4))
            cut = int(rng.integers(0, len(text)))
            msg = text[:cut] + rng.bytes(int(rng.integers(0, 5))) + text[cut:]
        try:
            decode(msg)
            outcomes["ok"] += 1
        except PayloadError as exc:
            outcomes[exc.reason] = outcomes.get(exc.reason, 0) + 1
    assert set(outcomes) - {"ok"} <= set(pl.REASONS)
    assert len(outcomes) >= 6  # the generator really reaches many distinct checks


def test_window_duration():
    assert make_window(n=5000).duration_s == pytest.approx(1.0)


def test_restamp_changes_only_time_and_sequence_and_keeps_the_checksum_valid():
    w = make_window(n=64)
    again = decode(restamp(encode_binary(w), w.start_ns + 10**10, w.seq + 5))
    assert (again.start_ns, again.seq) == (w.start_ns + 10**10, w.seq + 5)
    first = decode(encode_binary(w))
    assert (again.sensor_id, again.rpm, again.sample_rate_hz) == (w.sensor_id, w.rpm,
                                                                  w.sample_rate_hz)
    np.testing.assert_array_equal(again.samples, first.samples)
    with pytest.raises(PayloadError, match="restamp what encode_binary wrote") as err:
        restamp(encode_json(w), 0, 0)
    assert err.value.reason == "bad_header"
    with pytest.raises(ValueError, match="seq=-1"):
        restamp(encode_binary(w), 0, -1)


def test_the_size_check_names_size_limit_and_key_and_the_default_fits_the_largest_window():
    pl.check_size(1000, 1000)
    with pytest.raises(PayloadError) as exc:
        pl.check_size(1001, 1000)
    assert exc.value.reason == "too_large"
    assert "1001-byte" in str(exc.value) and "1000-byte limit" in str(exc.value)
    assert "ingest.max_payload_bytes" in str(exc.value)
    largest = make_window(n=pl.MAX_SAMPLES, sample_rate_hz=pl.MAX_SAMPLE_RATE_HZ,
                          sensor_id="s" * pl.MAX_SENSOR_ID_BYTES)
    assert len(encode_binary(largest, "float32")) == pl.max_window_bytes()
    assert pl.max_window_bytes(25_600.0) == pl.HEADER_MAX_BYTES + 4 * 60 * 25_600


def _general_path(msg: bytes) -> Window | str:
    """What the pydantic list path makes of ``msg`` (the reference for the float32 path)."""
    try:
        doc = pl._validate_json(msg)
        with np.errstate(over="ignore"):
            samples = np.asarray(doc.samples, np.float32)
        return pl._check_window(pl._window(doc, samples))
    except PayloadError as exc:
        return exc.reason


def _outcome(msg: bytes) -> Window | str:
    try:
        return decode(msg)
    except PayloadError as exc:
        return exc.reason


@pytest.mark.parametrize("text", [
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": [1, -2.5e-3, 0]}',
    b'{"samples":[ 0.25 ,\n-1E+2\t,3e0 ], "sensor_id": "s1", "start_ns": 5,'
    b' "sample_rate_hz": 5000, "rpm": null}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": ["1.5", 2]}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": [01, 2]}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": [+1, .5]}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": [1 2]}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": [1,]}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": [1, NaN]}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": [1e39]}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": [[1], 2]}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": []}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": [1], "samples": [2]}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "x\\"samples": [1]}',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples": [1]',
    b'{"sensor_id": "s1", "start_ns": 5, "sample_rate_hz": 5000, "samples"\x0b: [1]}',
])
def test_the_float32_json_path_agrees_with_the_general_validator(text):
    got, want = _outcome(text), _general_path(text)
    if isinstance(want, str):
        assert got == want
    else:
        assert_same_header(got, want)
        assert got.samples.dtype == np.float32
        np.testing.assert_array_equal(got.samples, want.samples)


def test_a_long_json_window_is_parsed_chunk_by_chunk_exactly():
    w = make_window(n=100_000, sample_rate_hz=50_000.0)  # ~2 MB of JSON: several chunks
    got = decode(json.dumps({**json.loads(encode_json(make_window(n=1))),
                             "samples": w.samples.tolist()}, indent=1).encode())
    np.testing.assert_array_equal(got.samples, w.samples)


def test_json_samples_are_parsed_without_a_list_of_python_floats():
    n = 500_000
    msg = encode_json(make_window(n=n, sample_rate_hz=50_000.0))
    tracemalloc.start()
    try:
        decode(msg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # float32 samples (4 B each) plus one 256 kB chunk and its float64 values; a list of
    # Python floats alone would be 32 B a sample (16 MB here)
    assert peak < 4 * n + 2 * 2**20, peak
