"""The SQLite outbox: queue semantics, idempotency, crash durability, quota policy, threads."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from slewguard.service.outbox import SCHEMA_VERSION, Outbox, OutboxFullError, read_results
from slewguard.service.result import Result
from slewguard.service.sinks.forwarder import Forwarder


def result(i: int, sensor: str = "s1", predicted: str = "healthy", pad: int = 0,
           asset: str = "crane1", site: str = "yard1", bearing: str = "slew") -> Result:
    return Result(site, asset, bearing, sensor, "m1", predicted, 0.9,
                  {"healthy": 0.9, "outer_race": 0.1}, {"rms": 0.5 + i, "pad": float(pad)},
                  6.0, i, 1_700_000_000_000_000_000 + i * 10**9,
                  f"plant/{site}/{asset}/{bearing}/{sensor}/vib" + "x" * pad)


# The outbox table as slewguard wrote it before the schema was versioned (user_version 0):
# unique on (sensor, start_ns) alone. Copied verbatim: migration tests must start from it.
SCHEMA_V0 = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_s REAL NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    UNIQUE (sensor, start_ns)
);
CREATE INDEX IF NOT EXISTS outbox_state_id ON outbox (state, id);
"""


def write_v0_outbox(path, rows: list[tuple[Result, int, str | None]]) -> None:
    """An outbox file of schema version 0 holding ``rows`` as (result, state, reason)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_V0)
    db.executemany("INSERT INTO outbox (sensor, start_ns, body, created_s, state, reason) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   [(r.sensor, r.start_ns, r.to_json(), 1000.0 + k, state, reason)
                    for k, (r, state, reason) in enumerate(rows)])
    db.commit()
    db.close()


class Collect:
    """An in-process sink that keeps what it is given (the forwarder's Sink interface)."""

    name = "collect"

    def __init__(self) -> None:
        self.got: list[Result] = []

    def write(self, results) -> None:
        self.got.extend(results)


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


def test_the_same_sensor_name_on_another_asset_is_another_window(tmp_path):
    # Issue 17.1: acc1 on crane-1 and crane-2 sampling in step overwrote each other.
    a = result(1, sensor="acc1", asset="crane-1")
    b = result(1, sensor="acc1", asset="crane-2")
    assert a.start_ns == b.start_ns and a.key() != b.key()
    assert a.key() == ("yard1", "crane-1", "slew", "acc1", a.start_ns)
    box = Outbox(tmp_path / "o.db")
    box.put([a, b, result(1, sensor="acc1", asset="crane-1", bearing="hoist"),
             result(1, sensor="acc1", asset="crane-1", site="yard2")])
    assert box.depth() == 4
    box.put([result(1, sensor="acc1", asset="crane-2", predicted="outer_race")])  # redelivery
    rows = box.claim(10)
    assert len(rows) == 4 == len({r.key() for _, r in rows})
    by_asset = {(r.site, r.asset, r.bearing): r.predicted for _, r in rows}
    assert by_asset == {("yard1", "crane-1", "slew"): "healthy",
                        ("yard1", "crane-2", "slew"): "outer_race",
                        ("yard1", "crane-1", "hoist"): "healthy",
                        ("yard2", "crane-1", "slew"): "healthy"}


def test_a_version_0_outbox_is_migrated_without_losing_a_row(tmp_path):
    path = tmp_path / "o.db"
    pending = [result(i, sensor=f"s{i % 3}") for i in range(6)]
    rows = [(r, 0, None) for r in pending] + [
        (result(10), 1, None), (result(11), 2, "influx_400"), (result(12), 1, None)]
    write_v0_outbox(path, rows)
    with sqlite3.connect(path) as db:  # the newest row was sent and deleted: its id is used
        db.execute("DELETE FROM outbox WHERE id = 9")
    assert [r.seq for _, r, _ in read_results(path)] == [0, 1, 2, 3, 4, 5, 10, 11]
    box = Outbox(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
        kept = db.execute("SELECT id, site, asset, bearing, sensor, start_ns, state, reason, "
                          "created_s FROM outbox ORDER BY id").fetchall()
    assert kept == [(k + 1, "yard1", "crane1", "slew", r.sensor, r.start_ns, state, reason,
                     1000.0 + k) for k, (r, state, reason) in enumerate(rows[:8])]
    assert box.depth() == 6 and [r for _, r in box.claim(10)] == pending
    (_, reason, aside), = box.set_aside_rows()
    assert (reason, aside) == ("influx_400", result(11))
    # The new key holds after the migration; new ids stay above every id the file ever used.
    box.put([result(0, sensor="s0", asset="crane2")])
    assert box.depth() == 7 and box.results_since(8)[0][0] == 10
    sink = Collect()
    forwarder = Forwarder(box, [sink], batch_size=4)
    while box.depth():
        forwarder.step()
    assert sorted(r.key() for r in sink.got) == sorted(
        r.key() for r in [*pending, result(0, sensor="s0", asset="crane2")])
    box.close()
    again = Outbox(path)  # reopening a migrated file changes nothing
    assert again.depth() == 0 and len(again.results_since(0)) == 9


def test_an_empty_version_0_outbox_keeps_its_id_sequence(tmp_path):
    path = tmp_path / "o.db"
    write_v0_outbox(path, [(result(1), 1, None), (result(2), 1, None)])
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM outbox")
    box = Outbox(path)
    box.put([result(3)])
    assert [i for i, _ in box.claim(1)] == [3]


def test_an_outbox_from_a_newer_slewguard_is_refused_untouched(tmp_path):
    path = tmp_path / "o.db"
    Outbox(path).put([result(1)])
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="schema version 2, newer than this slewguard's 1"):
        Outbox(path)
    assert [r.seq for _, r, _ in read_results(path)] == [1]


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
    from slewguard.service.metrics import Metrics

    metrics = Metrics()  # the daemon's own: a metric the outbox misnames fails here
    registry = metrics.registry
    box = Outbox(tmp_path / "o.db", max_bytes=256 * 1024, when_full="drop_oldest",
                 metrics=metrics)
    for i in range(0, 400, 10):
        box.put([result(k, pad=2000) for k in range(i, i + 10)])
    lost = box.dropped["pending"]
    assert lost > 0 and box.depth() == 400 - lost
    assert min(r.seq for _, r in box.claim(1000)) == lost  # the oldest went first
    assert registry.get_sample_value("slewguard_outbox_dropped_total",
                                     {"reason": "pending"}) == lost
    assert registry.get_sample_value("slewguard_outbox_depth") == 400 - lost
    assert registry.get_sample_value("slewguard_outbox_size_bytes") == box.size_bytes()
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
