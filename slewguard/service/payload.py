"""Vibration-window payloads: a compact binary format for sensors and JSON for debugging.

Binary layout (little endian, one message = one window)::

    offset  struct  field
    0       4s      magic b"SLGW"
    4       B       schema version (1)
    5       B       sample format: 1 = int16 (physical = raw * scale), 2 = float32 (scale = 1)
    6       B       unit code: 1 = g, 2 = m/s^2, 3 = mm/s, 4 = um
    7       B       flags (reserved, 0)
    8       H       L = length of the sensor id in bytes (1..128)
    10      Ls      sensor id, utf-8, [A-Za-z0-9][A-Za-z0-9_.:-]*
    10+L    q       start_ns: UTC epoch nanoseconds of the first sample (>= 0)
    18+L    d       sample_rate_hz (1000 .. 50000)
    26+L    d       scale: physical units per int16 step (> 0, finite)
    34+L    d       rpm: shaft speed (NaN = absent; the daemon may use a configured value)
    42+L    Q       seq: sender's sequence number
    50+L    I       N = sample count (1 .. 3_000_000 = 60 s at 50 kHz)
    54+L    N*h|f   samples
    end-4   I       CRC32 (zlib) of every byte before it

JSON form (one object, UTF-8): ``{"sensor_id": "s1", "start_ns": 1700000000000000000,
"sample_rate_hz": 5000.0, "rpm": 6.0 | null, "seq": 7, "unit": "g", "samples": [0.1, ...]}``.

Every failure raises ``PayloadError`` whose ``reason`` is one of ``REASONS`` (a Prometheus label)
and whose message names the bad value.

Example:
    >>> w = Window("s1", 0, 5000.0, 6.0, 1, "g", np.zeros(8, np.float32))
    >>> decode(encode_binary(w)).sensor_id
    's1'
    >>> decode(encode_json(w)).rpm
    6.0
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAGIC = b"SLGW"
VERSION = 1
HEAD = struct.Struct("<4sBBBBH")  # magic, version, sample format, unit code, flags, id length
BODY = struct.Struct("<qdddQI")  # start_ns, sample_rate_hz, scale, rpm, seq, n_samples
CRC = struct.Struct("<I")
SAMPLE_FORMATS = {1: ("int16", np.dtype("<i2")), 2: ("float32", np.dtype("<f4"))}
FORMAT_CODES = {name: code for code, (name, _) in SAMPLE_FORMATS.items()}
UNITS = {1: "g", 2: "m/s^2", 3: "mm/s", 4: "um"}
UNIT_CODES = {name: code for code, name in UNITS.items()}
MIN_SAMPLE_RATE_HZ = 1_000.0
MAX_SAMPLE_RATE_HZ = 50_000.0
MAX_SAMPLES = 60 * 50_000
MAX_SENSOR_ID_BYTES = 128
SENSOR_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
INT16_MAX = 32767

REASONS = (
    "too_short", "bad_magic", "unsupported_version", "bad_header", "checksum", "length_mismatch",
    "bad_sensor_id", "bad_sample_rate", "bad_rpm", "bad_timestamp", "too_many_samples", "empty",
    "nan_samples", "json_invalid", "schema", "too_large",
)
MAX_WINDOW_S = MAX_SAMPLES / MAX_SAMPLE_RATE_HZ  # 60 s: the longest window the format allows
HEADER_MAX_BYTES = HEAD.size + MAX_SENSOR_ID_BYTES + BODY.size + CRC.size
SIZE_KEY = "ingest.max_payload_bytes"  # the daemon's setting, named in too_large errors
# The JSON samples array, decoded without a Python list when it holds only JSON numbers.
_SAMPLES_KEY = re.compile(rb'"samples"[ \t\r\n]*:[ \t\r\n]*\[')
_NOT_A_NUMBER = re.compile(  # the start of a field that is not one JSON number
    rb'(?:\A|,)[ \t\r\n]*+(?!-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?'
    rb'[ \t\r\n]*(?:,|\Z))')
_BLANK = re.compile(rb"[ \t\r\n]*")
_CHUNK_BYTES = 1 << 18  # numbers parsed per step: other threads get the GIL in between


class PayloadError(ValueError):
    """A message that is not a valid window; ``reason`` is one of ``REASONS``.

    Example:
        >>> PayloadError("checksum", "CRC32 mismatch").reason
        'checksum'
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"reason={reason!r} is not one of {REASONS}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Window:
    """One vibration window, samples already in physical units (float32, shape (N,))."""

    sensor_id: str
    start_ns: int
    sample_rate_hz: float
    rpm: float | None
    seq: int
    unit: str
    samples: np.ndarray = field(repr=False)

    @property
    def duration_s(self) -> float:
        """Window length in seconds."""
        return len(self.samples) / self.sample_rate_hz


def max_window_bytes(sample_rate_hz: float = MAX_SAMPLE_RATE_HZ) -> int:
    """Bytes of the largest binary window at ``sample_rate_hz``: the longest window (60 s, at
    most ``MAX_SAMPLES``) of float32 samples plus the longest header.

    Example:
        >>> max_window_bytes()   # 60 s at 50 kHz
        12000186
    """
    n = min(MAX_SAMPLES, math.ceil(MAX_WINDOW_S * sample_rate_hz))
    return HEADER_MAX_BYTES + 4 * n


def check_size(size: int, max_bytes: int) -> None:
    """Raise PayloadError("too_large") when a ``size``-byte message exceeds ``max_bytes``;
    cheap, so it runs before any decoding.

    Example:
        >>> check_size(100, 1000)
    """
    if size > max_bytes:
        raise PayloadError("too_large", f"{size}-byte message exceeds the {max_bytes}-byte "
                           f"limit ({SIZE_KEY}): send shorter windows (binary int16 is the "
                           f"most compact) or raise {SIZE_KEY}")


def _check_window(w: Window) -> Window:
    """Raise PayloadError unless every field of ``w`` is within the documented limits."""
    raw = w.sensor_id.encode("utf-8", "replace")
    if not (len(raw) <= MAX_SENSOR_ID_BYTES and SENSOR_ID_RE.fullmatch(w.sensor_id)):
        raise PayloadError("bad_sensor_id", f"sensor_id={w.sensor_id[:140]!r} must be 1..128 "
                           "bytes of [A-Za-z0-9_.:-] starting with a letter or digit")
    if not 0 <= w.start_ns < 2**63:
        raise PayloadError("bad_timestamp", f"start_ns={w.start_ns} must be UTC epoch ns >= 0")
    if not MIN_SAMPLE_RATE_HZ <= w.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise PayloadError("bad_sample_rate", f"sample_rate_hz={w.sample_rate_hz} must be in "
                           f"[{MIN_SAMPLE_RATE_HZ:g}, {MAX_SAMPLE_RATE_HZ:g}]")
    if w.rpm is not None and not math.isfinite(w.rpm):
        raise PayloadError("bad_rpm", f"rpm={w.rpm} must be finite (send NaN/null for absent)")
    if not 0 <= w.seq < 2**64:
        raise PayloadError("schema", f"seq={w.seq} must be in [0, 2**64)")
    if w.unit not in UNIT_CODES:
        raise PayloadError("bad_header", f"unit={w.unit!r} must be one of {list(UNIT_CODES)}")
    n = len(w.samples)
    if n == 0:
        raise PayloadError("empty", "the window has no samples")
    if n > MAX_SAMPLES:
        raise PayloadError("too_many_samples", f"{n} samples exceed the limit of {MAX_SAMPLES} "
                           "(60 s at 50 kHz): split the recording into shorter windows")
    bad = np.flatnonzero(~np.isfinite(w.samples))
    if bad.size:
        raise PayloadError("nan_samples", f"{bad.size} samples are NaN or infinite (first at "
                           f"index {bad[0]}: {w.samples[bad[0]]})")
    return w


def encode_binary(window: Window, sample_format: str = "int16") -> bytes:
    """Encode ``window`` in the binary layout above; int16 quantises with error <= scale/2.

    Example:
        >>> w = Window("s1", 0, 5000.0, None, 0, "g", np.ones(4, np.float32))
        >>> encode_binary(w, "float32")[:4]
        b'SLGW'
    """
    if sample_format not in FORMAT_CODES:
        raise ValueError(f"sample_format={sample_format!r} must be one of {list(FORMAT_CODES)}")
    _check_window(window)
    x = np.asarray(window.samples, dtype=np.float64)
    if sample_format == "int16":
        peak = float(np.max(np.abs(x)))
        scale = peak / INT16_MAX if peak > 0 else 1.0
        data = np.clip(np.rint(x / scale), -INT16_MAX, INT16_MAX).astype("<i2").tobytes()
    else:
        scale, data = 1.0, x.astype("<f4").tobytes()
    sid = window.sensor_id.encode("utf-8")
    rpm = math.nan if window.rpm is None else float(window.rpm)
    head = HEAD.pack(MAGIC, VERSION, FORMAT_CODES[sample_format], UNIT_CODES[window.unit], 0,
                     len(sid))
    body = BODY.pack(window.start_ns, window.sample_rate_hz, scale, rpm, window.seq, len(x))
    msg = head + sid + body + data
    return msg + CRC.pack(zlib.crc32(msg))


def restamp(payload: bytes, start_ns: int, seq: int) -> bytes:
    """A binary payload with a new start time and sequence number and its CRC recomputed; the
    samples are not decoded or re-quantised. For replaying recorded windows at a high rate.

    Example:
        >>> w = Window("s1", 0, 5000.0, 6.0, 1, "g", np.ones(4, np.float32))
        >>> decode(restamp(encode_binary(w), 10**9, 2)).seq
        2
    """
    if len(payload) < HEAD.size + BODY.size + CRC.size or payload[:4] != MAGIC:
        raise PayloadError("bad_header", f"a {len(payload)}-byte message without the {MAGIC!r} "
                           "header is not a binary window: restamp what encode_binary wrote")
    if start_ns < 0 or seq < 0:
        raise ValueError(f"start_ns={start_ns} and seq={seq} must be >= 0")
    at = HEAD.size + HEAD.unpack_from(payload)[5]
    _, rate, scale, rpm, _, n = BODY.unpack_from(payload, at)
    msg = bytearray(payload[: -CRC.size])
    BODY.pack_into(msg, at, start_ns, rate, scale, rpm, seq, n)
    return bytes(msg) + CRC.pack(zlib.crc32(msg))


def _decode_binary(payload: bytes) -> Window:
    if len(payload) < HEAD.size + BODY.size + CRC.size:
        raise PayloadError("too_short", f"{len(payload)} bytes is shorter than any window "
                           f"({HEAD.size + BODY.size + CRC.size} bytes without id and samples)")
    magic, version, fmt, unit, _flags, id_len = HEAD.unpack_from(payload)
    if version != VERSION:
        raise PayloadError("unsupported_version", f"schema version {version}; this daemon "
                           f"reads version {VERSION}: upgrade slewguard or the sender")
    (crc,) = CRC.unpack_from(payload, len(payload) - CRC.size)
    if zlib.crc32(memoryview(payload)[: -CRC.size]) != crc:  # no copy of the body
        raise PayloadError("checksum", f"CRC32 {crc:#010x} does not match the "
                           f"{len(payload)}-byte message: it was corrupted or truncated")
    if fmt not in SAMPLE_FORMATS or unit not in UNITS:
        raise PayloadError("bad_header", f"sample format code {fmt} (known {list(SAMPLE_FORMATS)})"
                           f" or unit code {unit} (known {list(UNITS)}) is unknown")
    if not 1 <= id_len <= MAX_SENSOR_ID_BYTES or HEAD.size + id_len + BODY.size > len(payload):
        raise PayloadError("bad_sensor_id", f"sensor id length {id_len} must be 1..128 and fit "
                           f"in the {len(payload)}-byte message")
    try:
        sensor_id = payload[HEAD.size : HEAD.size + id_len].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("bad_sensor_id", f"sensor id is not UTF-8: {exc}") from None
    start_ns, rate, scale, rpm, seq, n = BODY.unpack_from(payload, HEAD.size + id_len)
    offset = HEAD.size + id_len + BODY.size
    dtype = SAMPLE_FORMATS[fmt][1]
    if n > MAX_SAMPLES:
        raise PayloadError("too_many_samples", f"header says {n} samples; the limit is "
                           f"{MAX_SAMPLES} (60 s at 50 kHz)")
    if offset + n * dtype.itemsize + CRC.size != len(payload):
        raise PayloadError("length_mismatch", f"header says {n} {SAMPLE_FORMATS[fmt][0]} samples "
                           f"({offset + n * dtype.itemsize + CRC.size} bytes) but the message "
                           f"has {len(payload)} bytes")
    if not (math.isfinite(scale) and scale > 0):
        raise PayloadError("bad_header", f"scale={scale} must be finite and > 0")
    raw = np.frombuffer(payload, dtype=dtype, count=n, offset=offset)
    if raw.dtype == np.float32:  # native float32: a read-only view, no second copy in memory
        samples = raw
    else:
        with np.errstate(over="ignore"):  # a huge scale overflows to inf: nan_samples
            samples = raw.astype(np.float32)  # int16 is exact in float32; no float64 temporary
            if fmt == 1:
                samples *= np.float32(scale)
    window = Window(sensor_id, start_ns, rate, None if math.isnan(rpm) else rpm, seq,
                    UNITS[unit], samples)
    return _check_window(window)


class _JsonWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)

    sensor_id: str = Field(description="Sensor id, [A-Za-z0-9_.:-], 1..128 bytes.")
    start_ns: int = Field(description="UTC epoch nanoseconds of the first sample.")
    sample_rate_hz: float = Field(description="Samples per second.")
    rpm: float | None = Field(None, description="Shaft speed in rpm; null when unknown.")
    seq: int = Field(0, description="Sender's sequence number.")
    unit: str = Field("g", description=f"One of {list(UNIT_CODES)}.")
    samples: list[float] = Field(description="Samples in physical units.")


def encode_json(window: Window) -> bytes:
    """Encode ``window`` as the debugging JSON form (exact float32 values).

    Example:
        >>> w = Window("s1", 0, 5000.0, None, 0, "g", np.zeros(2, np.float32))
        >>> json.loads(encode_json(w))["samples"]
        [0.0, 0.0]
    """
    _check_window(window)
    return json.dumps({
        "sensor_id": window.sensor_id, "start_ns": window.start_ns,
        "sample_rate_hz": window.sample_rate_hz, "rpm": window.rpm, "seq": window.seq,
        "unit": window.unit, "samples": np.asarray(window.samples, np.float32).tolist(),
    }).encode()


def _decode_json(payload: bytes) -> Window:
    if len(payload) > MAX_SAMPLES * 32:
        raise PayloadError("too_many_samples", f"{len(payload)}-byte JSON is larger than any "
                           f"window of {MAX_SAMPLES} samples")
    fast = _json_numbers_window(payload)
    if fast is not None:
        return _check_window(fast)
    doc = _validate_json(payload)  # the general path: a Python list of floats
    if len(doc.samples) > MAX_SAMPLES:
        raise PayloadError("too_many_samples", f"{len(doc.samples)} samples exceed {MAX_SAMPLES}")
    samples = np.asarray(doc.samples, dtype=np.float64)
    with np.errstate(over="ignore"):
        samples32 = samples.astype(np.float32)
    if np.isfinite(samples).all() and not np.isfinite(samples32).all():
        raise PayloadError("nan_samples", "samples overflow float32 (|x| > 3.4e38)")
    return _check_window(_window(doc, samples32))


def _validate_json(payload: bytes) -> _JsonWindow:
    try:
        return _JsonWindow.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] in ("json_invalid", "json_type"):
            raise PayloadError("json_invalid", f"not valid JSON: {first['msg']}") from None
        where = ".".join(str(p) for p in first["loc"])
        raise PayloadError("schema", f"{where}: {first['msg']} ({len(exc.errors())} "
                           "error(s))") from None


def _window(doc: _JsonWindow, samples: np.ndarray) -> Window:
    rpm = None if doc.rpm is None or math.isnan(doc.rpm) else doc.rpm
    return Window(doc.sensor_id, doc.start_ns, doc.sample_rate_hz, rpm, doc.seq, doc.unit,
                  samples)


def _json_numbers_window(payload: bytes) -> Window | None:
    """The window of a JSON document whose samples are plain JSON numbers, parsed straight
    into float32 (no list of Python floats: 4 bytes a sample instead of about 40); None when
    the document is anything else, for the full validator to judge."""
    key = _SAMPLES_KEY.search(payload)
    end = -1 if key is None else payload.find(b"]", key.end())
    if key is None or end < 0:
        return None
    rest = payload[: key.start()] + b'"samples": []' + payload[end + 1:]
    try:
        doc = _JsonWindow.model_validate_json(rest)
    except ValidationError:
        return None
    samples = None if doc.samples else _parse_numbers(payload, key.end(), end)
    return None if samples is None else _window(doc, samples)


def _parse_numbers(text: bytes, start: int = 0, end: int | None = None) -> np.ndarray | None:
    """float32 samples of ``text[start:end]``, comma-separated JSON numbers; None unless every
    field is one. Reads 256 kB chunks in place: no copy of the whole text.

    Example:
        >>> _parse_numbers(b"1.5, -2e3,0").tolist()
        [1.5, -2000.0, 0.0]
    """
    end = len(text) if end is None else end
    if _BLANK.fullmatch(text, start, end):
        return np.zeros(0, np.float32)
    n = text.count(b",", start, end) + 1
    if n > MAX_SAMPLES:
        raise PayloadError("too_many_samples", f"{n} samples exceed {MAX_SAMPLES}")
    out = np.empty(n, np.float32)
    at, filled = start, 0
    while at < end:
        stop = text.find(b",", min(at + _CHUNK_BYTES, end), end)  # chunks end between fields
        stop = end if stop < 0 else stop
        chunk = text[at:stop]
        at = stop + 1
        if _NOT_A_NUMBER.search(chunk):
            return None
        values = np.fromstring(chunk, dtype=np.float64, sep=",")  # C strtod, exact
        if filled + values.size > n:
            return None
        with np.errstate(over="ignore"):
            out[filled: filled + values.size] = values
        if not np.isfinite(out[filled: filled + values.size]).all():
            raise PayloadError("nan_samples", "samples overflow float32 (|x| > 3.4e38)")
        filled += values.size
    return out if filled == n else None


def decode(payload: bytes) -> Window:
    """Decode one MQTT payload (binary or JSON) into a checked ``Window``.

    Raises ``PayloadError`` (and nothing else) for any malformed input.

    Example:
        >>> decode(b'{"sensor_id": "s1", "start_ns": 0, "sample_rate_hz": 5000, '
        ...        b'"samples": [1.5]}').samples.tolist()
        [1.5]
    """
    payload = bytes(payload)
    if payload[:4] == MAGIC:
        return _decode_binary(payload)
    if payload.lstrip()[:1] == b"{":
        return _decode_json(payload)
    if len(payload) < len(MAGIC):
        raise PayloadError("too_short", f"{len(payload)}-byte message carries no window")
    raise PayloadError("bad_magic", f"message starts with {payload[:4]!r}: expected the binary "
                       f"magic {MAGIC!r} or a JSON object")
