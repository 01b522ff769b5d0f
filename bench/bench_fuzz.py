"""Fuzz run: malformed windows of many kinds through a real mosquitto to a running daemon.

Each kind of bad message (truncated binary, wrong magic or version, NaN/inf samples, huge
declared sizes, bad JSON, wrong types, missing fields, deep nesting, random bytes, ...) is
published ``--per-kind`` times (QoS 1, PUBACKed) on ``plant/fuzz/<kind>/slew/s1/vib`` to one
``slewguard serve`` (shipped fast model). A subscriber on the dead-letter topic counts the
dead letters per kind (the envelope names the source topic). Every message is also passed to
``slewguard.service.payload.decode`` in this process: any exception other than ``PayloadError``
is recorded with its type (the decoder promises none). At the end: is the daemon alive and
healthy, does it still diagnose valid windows, its RSS before, at peak and after, and any
traceback in its log.

    .venv/bin/python bench/bench_fuzz.py                  # 28 kinds x 400, ~3 min
    .venv/bin/python bench/bench_fuzz.py --per-kind 20    # quick
Writes the table to bench/results/fuzz.md (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_chaos import AckedPublisher, Daemon  # noqa: E402
from bench.bench_service import PeakRss, rss_bytes  # noqa: E402
from slewguard.service.payload import (  # noqa: E402
    BODY,
    CRC,
    HEAD,
    MAGIC,
    MAX_SAMPLES,
    PayloadError,
    Window,
    decode,
    encode_binary,
    encode_json,
)
from tests.service import services  # noqa: E402

RATE_HZ, SECONDS, RPM = 5000.0, 1.0, 1797.0
DEAD_LETTER = "slewguard/dead-letter"
DIAG = "plant/+/+/+/+/diag"


def signal_samples() -> np.ndarray:
    from slewguard.signal.scenario import SimulationSpec
    from slewguard.signal.simulate import simulate

    spec = SimulationSpec(fault="outer_race", bearing="cwru-6205", rpm=RPM,
                          sample_rate_hz=RATE_HZ, window_seconds=SECONDS, snr_db=0.0)
    return simulate(spec, n_windows=1, seed=0).windows[0]


def pack(data: bytes, *, sid: bytes = b"s1", version: int = 1, fmt: int = 1, unit: int = 1,
         id_len: int | None = None, start_ns: int = 1_700_000_000 * 10**9,
         rate: float = RATE_HZ, scale: float = 1e-3, rpm: float = RPM, seq: int = 0,
         n: int | None = None) -> bytes:
    """A binary window with any header values and a correct CRC (so the field is what fails)."""
    itemsize = 2 if fmt == 1 else 4
    head = HEAD.pack(MAGIC, version, fmt, unit, 0, len(sid) if id_len is None else id_len)
    body = BODY.pack(start_ns, rate, scale, rpm, seq, len(data) // itemsize if n is None else n)
    msg = head + sid + body + data
    return msg + CRC.pack(zlib.crc32(msg))


def kinds(x: np.ndarray) -> dict[str, Callable[[np.random.Generator, int], bytes]]:
    """Kind name -> make(rng, i): the i-th malformed message of that kind."""
    valid = encode_binary(Window("s1", 1_700_000_000 * 10**9, RATE_HZ, RPM, 0, "g", x))
    int16 = valid[HEAD.size + 2 + BODY.size: -CRC.size]
    doc = json.loads(encode_json(Window("s1", 1_700_000_000 * 10**9, RATE_HZ, RPM, 0, "g",
                                        x[:1000])))
    text = json.dumps(doc)

    def js(**change) -> bytes:
        return json.dumps({**doc, **change}, allow_nan=True).encode()

    def f32(values: np.ndarray) -> bytes:
        return pack(values.astype("<f4").tobytes(), fmt=2, scale=1.0)

    def pick(seq, i):
        return seq[i % len(seq)]

    def flip(rng, i):
        b = bytearray(valid)
        at = int(rng.integers(len(b)))
        b[at] ^= 1 << int(rng.integers(8))
        return bytes(b)

    def nan_inf(rng, i):
        y = x.copy()
        y[rng.integers(len(y), size=1 + i % 5)] = pick([np.nan, np.inf, -np.inf], i)
        return f32(y)

    def missing(rng, i):
        d = dict(doc)
        d.pop(pick(["sensor_id", "start_ns", "sample_rate_hz", "samples"], i))
        return json.dumps(d).encode()

    def wrong_types(rng, i):
        return js(**pick([{"samples": "0.1,0.2"}, {"start_ns": "yesterday"},
                          {"sample_rate_hz": [5000]}, {"sensor_id": 5}, {"rpm": {"v": 1}},
                          {"samples": [[0.1], [0.2]]}, {"seq": 1.5}, {"samples": [True, None]}],
                         i))

    def deep(rng, i):
        depth = pick([1_000, 10_000, 100_000], i)
        return ('{"sensor_id": "s1", "samples": ' + "[" * depth + "]" * depth + "}").encode()

    def deep_objects(rng, i):
        depth = pick([1_000, 50_000], i)
        return ('{"a":' * depth + "1" + "}" * depth).encode()

    return {
        "empty": lambda rng, i: b"",
        "whitespace_only": lambda rng, i: b" \n\t" * (1 + i % 3),
        "too_short": lambda rng, i: pick([b"S", b"SL", b"SLG", b"\x00"], i),
        "random_bytes": lambda rng, i: rng.bytes(int(rng.integers(4, 4096))),
        "random_after_magic": lambda rng, i: MAGIC + rng.bytes(int(rng.integers(0, 4096))),
        "truncated_binary": lambda rng, i: valid[: int(rng.integers(4, len(valid)))],
        "bit_flip": flip,
        "wrong_magic": lambda rng, i: pick([b"SLGX", b"slgw", b"\x00\x00\x00\x00"], i)
        + valid[4:],
        "wrong_version": lambda rng, i: pack(int16, version=pick([0, 2, 255], i)),
        "unknown_format_or_unit": lambda rng, i: pack(int16, **pick([{"fmt": 0}, {"fmt": 3},
                                                                    {"unit": 0}, {"unit": 99}],
                                                                   i)),
        "huge_declared_samples": lambda rng, i: pack(int16, n=pick(
            [MAX_SAMPLES + 1, 2**31, 2**32 - 1], i)),
        "length_mismatch": lambda rng, i: pack(int16, n=len(int16) // 2 + pick([1, -1, 1000],
                                                                                  i)),
        "bad_id_length": lambda rng, i: pack(int16, id_len=pick([0, 129, 65535, 3], i)),
        "bad_sensor_id": lambda rng, i: pack(int16, sid=pick([b"\xff\xfe", b"../x", b" s1",
                                                              b"s1\x00", b"a/b"], i)),
        "nan_inf_samples": nan_inf,
        "bad_scale": lambda rng, i: pack(int16, scale=pick([0.0, -1.0, math.nan, math.inf,
                                                            1e300], i)),
        "bad_sample_rate": lambda rng, i: pack(int16, rate=pick([0.0, -5000.0, math.nan,
                                                                 math.inf, 1e9, 999.0], i)),
        "bad_rpm": lambda rng, i: pack(int16, rpm=pick([math.inf, -math.inf, math.nan], i)),
        "bad_timestamp": lambda rng, i: pack(int16, start_ns=pick([-1, -(2**63)], i)),
        "zero_samples": lambda rng, i: pack(b"", n=0),
        "json_invalid": lambda rng, i: pick([text[: int(rng.integers(1, len(text)))].encode(),
                                             b"{sensor_id: s1}", b"{'a': 1}", b"{,}",
                                             text.encode() + b"}"], i),
        "json_wrong_types": wrong_types,
        "json_missing_fields": missing,
        "json_nan_inf": lambda rng, i: js(**pick([{"samples": [0.1, math.nan]},
                                                  {"samples": [math.inf] * 3},
                                                  {"samples": [1e39, 0.0]}, {"rpm": math.inf},
                                                  {"sample_rate_hz": math.nan}], i)),
        "json_huge_numbers": lambda rng, i: pick([
            text.replace('"start_ns": 1700000000000000000', '"start_ns": ' + "9" * 5000),
            text.replace('"sample_rate_hz": 5000.0', '"sample_rate_hz": 1e400'),
            text.replace('"seq": 0', '"seq": -1'), text.replace('"seq": 0', f'"seq": {2**70}'),
            text.replace('"start_ns": 1700000000000000000', '"start_ns": -5')], i).encode(),
        "json_bad_values": lambda rng, i: js(**pick([{"unit": "furlong"}, {"samples": []},
                                                     {"extra": 1}, {"sensor_id": ""},
                                                     {"sensor_id": "x" * 200}], i)),
        "json_not_an_object": lambda rng, i: pick([b"[1, 2]", b'"s1"', b"null", b"42",
                                                   b"\xef\xbb\xbf{}", b"  {"], i),
        "json_deep_nesting": lambda rng, i: pick([deep, deep_objects], i)(rng, i),
        "json_large_5mb": lambda rng, i: json.dumps(
            {**doc, "samples": [0.123456789] * 400_000, "sample_rate_hz": 0.0}).encode(),
        "f32_overflow_scale": lambda rng, i: pack(int16, scale=3e38),
    }


PER_KIND_CAP = {"json_large_5mb": 5, "json_deep_nesting": 60}


def direct_decode(messages: dict[str, list[bytes]]) -> dict[str, Counter]:
    """Outcome counts per kind of ``decode`` in this process: PayloadError reasons, 'accepted',
    or any other exception's type name."""
    out: dict[str, Counter] = defaultdict(Counter)
    for kind, payloads in messages.items():
        for payload in payloads:
            try:
                decode(payload)
                out[kind]["accepted"] += 1
            except PayloadError:
                out[kind]["PayloadError"] += 1
            except BaseException as exc:  # noqa: BLE001 - what the bench is looking for
                out[kind][f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
    return out


class DeadLetterCounter:
    """Counts dead letters per kind (the asset level of the source topic) and their reasons."""

    def __init__(self, port: int) -> None:
        self.per_kind: dict[str, Counter] = defaultdict(Counter)
        self.total = 0
        self.diag = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzz-dlq",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(DEAD_LETTER, 1), (DIAG, 1)])
        assert ready.wait(10), "dead-letter subscription not acknowledged"

    def _on_message(self, client, userdata, message) -> None:
        if message.topic != DEAD_LETTER:
            self.diag += 1
            return
        body = json.loads(message.payload)
        self.per_kind[body["topic"].split("/")[2]][body["reason"]] += 1
        self.total += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run(args: argparse.Namespace, work: Path) -> dict:
    x = signal_samples()
    rng = np.random.default_rng(args.seed)
    makers = kinds(x)
    messages = {k: [make(rng, i) for i in range(min(args.per_kind, PER_KIND_CAP.get(k,
                                                                                   10**9)))]
                for k, make in makers.items()}
    started = time.perf_counter()
    decoded = direct_decode(messages)
    decode_s = time.perf_counter() - started
    broker = services.start_mosquitto(work / "mosquitto", extra=["max_queued_messages 100000"])
    daemon = Daemon.create(work / "d0", broker.port, 0)
    counter = DeadLetterCounter(broker.port)
    publisher = None
    try:
        daemon.start()
        publisher = AckedPublisher(broker.port, "fuzz-pub")
        valid = [(f"plant/fuzz/control/slew/s{j}/vib",
                  encode_binary(Window(f"s{j}", time.time_ns() - 60 * 10**9 + k * 10**9,
                                       RATE_HZ, RPM, k, "g", x)))
                 for k in range(4) for j in (1, 2)]
        publisher.send(valid)  # warm up: the first batch allocates the model's buffers
        services.wait_until(lambda: counter.diag >= len(valid), 120, "warm-up diagnoses")
        time.sleep(2.0)
        rss_before = rss_bytes(daemon.proc.pid)
        peak = PeakRss([daemon.proc.pid])
        sent = 0
        for kind, payloads in messages.items():
            topic = f"plant/fuzz/{kind}/slew/s1/vib"
            for at in range(0, len(payloads), 50):
                publisher.send([(topic, p) for p in payloads[at:at + 50]])
            sent += len(payloads)
            print(f"sent {len(payloads):5d} {kind}", flush=True)
        last, changed = -1, time.monotonic()
        while counter.total < sent and time.monotonic() - changed < args.settle_s:
            if counter.total != last:
                last, changed = counter.total, time.monotonic()
            time.sleep(0.5)
        time.sleep(3.0)
        peak_first, peak_second = peak.stop()
        rss_after = rss_bytes(daemon.proc.pid)
        before = counter.diag
        publisher.send([(t.replace("control", "after"), p) for t, p in valid])
        with contextlib.suppress(TimeoutError):  # counted below
            services.wait_until(lambda: counter.diag >= before + len(valid), 120,
                                "diagnoses after the fuzz")
        after_ok = counter.diag - before
        alive = daemon.proc.poll() is None
        health = daemon.get("/healthz")[0]
        code = daemon.stop()
    finally:
        if publisher is not None:
            publisher.close()
        counter.close()
        daemon.kill()
        broker.stop()
    log = daemon.log.read_text(errors="replace")
    return {"messages": messages, "decoded": decoded, "decode_s": decode_s,
            "dead": counter.per_kind, "alive": alive, "health": health, "exit": code,
            "rss": (rss_before, max(peak_first, peak_second), rss_after),
            "control": (after_ok, len(valid)), "tracebacks": log.count("Traceback"),
            "log_tail": log[-3000:] if "Traceback" in log else ""}


def report(r: dict, args: argparse.Namespace) -> str:
    mib = 2**20
    lines = ["| kind | sent | dead-lettered | dead-letter reasons | decode(): PayloadError | "
             "decode(): accepted | decode(): other exception |", "|---|---|---|---|---|---|---|"]
    sent_all = dead_all = other_all = accepted_all = 0
    for kind, payloads in r["messages"].items():
        dead = r["dead"].get(kind, Counter())
        outcome = r["decoded"][kind]
        other = {k: v for k, v in outcome.items() if k not in ("PayloadError", "accepted")}
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(dead.items()))
        lines.append(f"| {kind} | {len(payloads)} | {sum(dead.values())} | {reasons} | "
                     f"{outcome['PayloadError']} | {outcome['accepted']} | "
                     f"{'; '.join(f'{k} x{v}' for k, v in other.items()) or 'none'} |")
        sent_all += len(payloads)
        dead_all += sum(dead.values())
        other_all += sum(other.values())
        accepted_all += outcome["accepted"]
    lines.append(f"| **all {len(r['messages'])} kinds** | **{sent_all}** | **{dead_all}** | | "
                 f"{sent_all - other_all - accepted_all} | {accepted_all} | **{other_all}** |")
    before, peak, after = (v / mib for v in r["rss"])
    ok, n = r["control"]
    lines += ["", f"- daemon alive at the end: **{'yes' if r['alive'] else 'NO'}** (/healthz "
              f"{r['health']}; SIGTERM exit code {r['exit']}); tracebacks in its log: "
              f"{r['tracebacks']}",
              f"- valid windows diagnosed after the fuzz: {ok} of {n}",
              f"- daemon RSS: {before:.0f} MiB before, peak {peak:.0f} MiB during, "
              f"{after:.0f} MiB after",
              f"- decode() in this process on all {sent_all} messages: {r['decode_s']:.1f} s"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-kind", type=int, default=400,
                        help="messages per kind (json_large_5mb: at most 5, deep nesting 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settle-s", type=float, default=60.0,
                        help="stop waiting for dead letters this long after the last one")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fuzz") as tmp:
        r = run(args, Path(tmp))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    command = ("bench/bench_fuzz.py " + " ".join(sys.argv[1:])).strip()
    body = report(r, args)
    text = (f"# Fuzz run\n\n`.venv/bin/python {command}` on commit {commit}, "
            f"{os.cpu_count()} cores (shared): one `slewguard serve` (shipped fast model) behind "
            "a real mosquitto; every message PUBACKed, dead letters counted on "
            f"`{DEAD_LETTER}`.\n\n{body}\n")
    if r["log_tail"]:
        text += f"\nEnd of the daemon's log:\n\n```\n{r['log_tail']}\n```\n"
    print("\n" + body)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
