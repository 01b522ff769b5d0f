"""The SQLite outbox: queue semantics, idempotency, crash durability, quota policy, threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from slewguard.service.outbox import Outbox, OutboxFullError, read_results
from slewguard.service.result import Result


def result(i: int, sensor: str = "s1", predicted: str = "healthy", pad: int = 0) -> Result:
    return Result("yard1", "crane1", "slew", sensor, "m1", predicted, 0.9,
                  {"healthy": 0.9, "outer_race": 0.1}, {"rms": 0.5 + i, "pad": float(pad)},
                  6.0, i, 1_700_000_000_000_000_000 + i * 10**9,
                  f"plant/yard1/crane1/slew/{sensor}/vib" + "x" * pad)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_put_claim_mark_sent(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([result(i) for i in range(5)])
    assert box.depth() == 5
    claimed = box.claim(3)
    assert [r.seq for _, r in claimed] == [0, 1, 2]
    assert box.claim(10)[0][0] == claimed[0][0]  # claim does not remove: crash-safe
    box.mark_sent([i for i, _ in claimed])
    assert box.depth() == 2
    assert [r.seq for _, r in box.claim(10)] == [3, 4]
    assert box.claim(10)[0][1] == result(3)


def test_redelivered_window_overwrites_itself(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([result(1), result(2)])
    old_id = box.claim(1)[0][0]
    box.put([result(1, predicted="outer_race")])  # same (sensor, start_ns), new verdict
    assert box.depth() == 2
    box.mark_sent([old_id])  # a forwarder that sent the old version must not hide the new one
    rows = box.claim(10)
    assert len(rows) == 2 and {r.predicted for _, r in rows} == {"healthy", "outer_race"}
    box.mark_sent([i for i, _ in rows])
    box.put([result(1)])  # redelivery after it was sent: pending again, sinks overwrite the point
    assert box.depth() == 1
    box.put([result(1, sensor="s2")])  # another sensor at the same instant is another window
    assert box.depth() == 2


def test_set_aside_keeps_reason_and_leaves_queue(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([result(1), result(2)])
    first = box.claim(1)[0][0]
    box.set_aside(first, "influx_400")
    assert box.depth() == 1
    (row_id, reason, r), = box.set_aside_rows()
    assert (row_id, reason, r.seq) == (first, "influx_400", 1)


def test_depth_and_age_follow_the_clock(tmp_path):
    clock = FakeClock()
    box = Outbox(tmp_path / "o.db", clock=clock)
    assert box.oldest_age_s() is None
    box.put([result(1)])
    clock.now += 30
    box.put([result(2)])
    clock.now += 5
    assert box.oldest_age_s() == pytest.approx(35.0)
    box.mark_sent([box.claim(1)[0][0]])
    assert box.oldest_age_s() == pytest.approx(5.0)


def test_committed_rows_survive_sigkill(tmp_path):
    path = tmp_path / "o.db"
    child = textwrap.dedent(f"""
        import sys, time
        from slewguard.service.outbox import Outbox
        from tests.service.test_outbox import result
        box = Outbox({str(path)!r})
        for i in range(20):
            box.put([result(i)])
        print("put-returned", flush=True)
        time.sleep(60)
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, cwd=root,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "put-returned"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    box = Outbox(path)
    assert box.depth() == 20
    assert sorted(r.seq for _, r in box.claim(100)) == list(range(20))


def test_quota_reject_deletes_sent_rows_first_then_refuses(tmp_path):
    box = Outbox(tmp_path / "o.db", max_bytes=256 * 1024, when_full="reject")
    for i in range(0, 400, 10):  # ~900 kB through a 256 kB quota: sent rows are recycled
        box.put([result(k, pad=2000) for k in range(i, i + 10)])
        box.mark_sent([row_id for row_id, _ in box.claim(10)])
    assert box.depth() == 0
    with pytest.raises(OutboxFullError, match="max_bytes=262144"):
        for j in range(0, 400, 5):
            box.put([result(1000 + k, pad=2000) for k in range(j, j + 5)])
    depth = box.depth()
    assert 0 < depth < 400 and depth == j  # every put that returned is stored
    assert box.size_bytes() <= 256 * 1024
    assert box.dropped == {}  # reject loses nothing: the caller keeps the rest un-acked


def test_quota_drop_oldest_counts_lost_results(tmp_path):
    registry = CollectorRegistry()

    class Metrics:
        outbox_dropped_total = Counter("outbox_dropped", "d", ["reason"], registry=registry)
        outbox_depth = Gauge("outbox_depth", "d", registry=registry)

    box = Outbox(tmp_path / "o.db", max_bytes=256 * 1024, when_full="drop_oldest",
                 metrics=Metrics())
    for i in range(0, 400, 10):
        box.put([result(k, pad=2000) for k in range(i, i + 10)])
    lost = box.dropped["pending"]
    assert lost > 0 and box.depth() == 400 - lost
    assert min(r.seq for _, r in box.claim(1000)) == lost  # the oldest went first
    assert registry.get_sample_value("outbox_dropped_total", {"reason": "pending"}) == lost
    assert registry.get_sample_value("outbox_depth") == 400 - lost
    assert box.size_bytes() <= 256 * 1024


def test_concurrent_puts_from_threads(tmp_path):
    box = Outbox(tmp_path / "o.db")
    errors: list[BaseException] = []

    def work(sensor: str) -> None:
        try:
            for i in range(50):
                box.put([result(i, sensor=sensor)])
                if i % 10 == 9:
                    box.mark_sent([rid for rid, r in box.claim(5) if r.sensor == sensor])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"s{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pending = box.claim(1000)
    assert len({r.key() for _, r in pending}) == len(pending) == box.depth()


def test_bad_arguments_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="when_full='drop'"):
        Outbox(tmp_path / "o.db", when_full="drop")
    with pytest.raises(ValueError, match="max_bytes=10"):
        Outbox(tmp_path / "o.db", max_bytes=10)
    with pytest.raises(ValueError, match="limit=0"):
        Outbox(tmp_path / "o.db").claim(0)


def test_close_checkpoints_the_wal(tmp_path):
    box = Outbox(tmp_path / "o.db")
    box.put([result(1)])
    box.close()
    assert not (tmp_path / "o.db-wal").exists() or (tmp_path / "o.db-wal").stat().st_size == 0
    assert Outbox(tmp_path / "o.db").depth() == 1


def test_read_queries_follow_the_stream_in_any_state_without_writing(tmp_path):
    path = tmp_path / "o.db"
    assert read_results(path) == []  # not created yet: the daemon is still starting
    clock = FakeClock()
    box = Outbox(path, clock=clock)
    first = [result(i) for i in range(3)]
    box.put(first)
    clock.now = 1005.0
    box.put([result(3, predicted="sensor_fault:clipping")])
    rows = box.results_since(0)
    assert [(r.seq, created) for _, r, created in rows] == [(0, 1000.0), (1, 1000.0),
                                                             (2, 1000.0), (3, 1005.0)]
    assert [r for _, r, _ in rows[:3]] == first
    box.mark_sent([rows[0][0]])  # sent rows are still there to read
    last_id = rows[1][0]
    assert [r.seq for _, r, _ in box.results_since(last_id)] == [2, 3]
    assert [r.seq for _, r, _ in box.results_since(0, limit=2)] == [0, 1]
    assert [r.seq for _, r, _ in box.recent(2)] == [2, 3]
    # Another reader (e.g. the demo's live table) opens the file read-only and sees the same.
    other = read_results(path, after_id=last_id)
    assert [(r.seq, r.predicted) for _, r, _ in other] == [(2, "healthy"),
                                                            (3, "sensor_fault:clipping")]
    box.put([result(1)])  # a redelivered window: new id, shows up again
    assert [r.seq for _, r, _ in read_results(path, after_id=rows[-1][0])] == [1]
    with pytest.raises(ValueError, match="limit=0"):
        box.results_since(0, limit=0)
    box.close()


def test_result_json_round_trips_every_field_and_writes_non_finite_as_null():
    r = Result("yard1", "crane1", "slew", "s1", "m1", "sensor_fault:spikes", float("nan"), {},
               {"rms": 0.5, "kurtosis": float("inf")}, 6.0, 3, 1_700_000_000_000_000_000,
               "plant/yard1/crane1/slew/s1/vib", evidence="2 spikes", quality=("spikes", "drift"))
    text = r.to_json()
    assert '"confidence":null' in text and '"kurtosis":null' in text
    assert '"quality":["spikes","drift"]' in text
    again = Result.from_json(text)
    assert again.quality == ("spikes", "drift") and again.evidence == "2 spikes"
    assert again.features["rms"] == 0.5 and again.to_json() == text
    assert result(4).to_json() == Result.from_json(result(4).to_json()).to_json()
