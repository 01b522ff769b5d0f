"""The durable outbox: results wait here (SQLite, WAL) until every sink has them.

The pipeline acknowledges an MQTT message only after ``put`` returned, so a result is either on
disk or still on the broker. ``put`` is idempotent on ``Result.key()`` = (site, asset, bearing,
sensor, start_ns): a redelivered window replaces its earlier row (with a new id, so a forwarder
holding the old id cannot mark the new version sent) and the sinks write it on the same
timestamp again; the same sensor name on another asset is another window.

Schema versions (``PRAGMA user_version``): 0 = the first outbox, unique on (sensor, start_ns),
which let ``acc1`` on two assets overwrite each other; 1 = unique on the whole key. Opening a
version-0 file migrates it in one transaction, keeping every row (state, id, age) and the id
sequence; a file from a newer slewguard is refused rather than rewritten.

Rows are ``pending`` -> ``sent`` (kept until space is needed) or ``set_aside`` (a sink refused it
for good; kept for inspection). Quota policy when ``max_bytes`` would be exceeded, in order:
1. delete sent rows, oldest first (free: they are in every sink);
2. delete set-aside rows, oldest first (counted: ``dropped["set_aside"]``);
3. ``when_full="reject"``: raise ``OutboxFullError`` - the caller stops acknowledging and the
   broker keeps (and later redelivers) the windows: nothing is lost while the broker has room.
   ``when_full="drop_oldest"``: delete the oldest pending rows (counted: ``dropped["pending"]``,
   these results are lost) until the new ones fit.
Size is measured as used pages (page_count - freelist_count) * page_size; deleted pages go to the
freelist and are reused, so the file stops growing near the quota without a VACUUM.

Example:
    >>> import tempfile
    >>> from slewguard.service.result import Result
    >>> box = Outbox(Path(tempfile.mkdtemp()) / "o.sqlite3")
    >>> r = Result("s", "a", "b", "x1", "m", "healthy", 1.0, {}, {}, 6.0, 0, 10, "t")
    >>> box.put([r, r]); box.depth()
    1
    >>> [(i, got.sensor) for i, got in box.claim(10)]
    [(2, 'x1')]
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from slewguard.service.result import Result

if TYPE_CHECKING:  # prometheus_client's, not collections.Counter (imported above)
    from prometheus_client import Counter as PromCounter
    from prometheus_client import Gauge

PENDING, SENT, SET_ASIDE = 0, 1, 2
WHEN_FULL = ("reject", "drop_oldest")
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL,
    asset TEXT NOT NULL,
    bearing TEXT NOT NULL,
    sensor TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_s REAL NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    UNIQUE (site, asset, bearing, sensor, start_ns)
);
CREATE INDEX outbox_state_id ON outbox (state, id);
"""
_COLUMNS = "id, site, asset, bearing, sensor, start_ns, body, created_s, state, reason"


class OutboxMetrics(Protocol):
    """What the outbox sets (``service.metrics.Metrics`` has them): a misspelt name fails
    loudly instead of turning a metric off."""

    outbox_dropped_total: PromCounter  # label reason
    outbox_depth: Gauge
    outbox_oldest_age_seconds: Gauge
    outbox_size_bytes: Gauge


class OutboxFullError(RuntimeError):
    """The quota is reached and ``when_full="reject"``: do not acknowledge; retry later."""


class Outbox:
    """Thread-safe durable queue of results (one SQLite connection behind a lock).

    Example:
        >>> import tempfile
        >>> Outbox(Path(tempfile.mkdtemp()) / "o.sqlite3", max_bytes=2**20).depth()
        0
    """

    def __init__(self, path: str | Path, max_bytes: int = 256 * 2**20, when_full: str = "reject",
                 metrics: OutboxMetrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if when_full not in WHEN_FULL:
            raise ValueError(f"when_full={when_full!r} must be one of {WHEN_FULL}")
        if max_bytes < 64 * 1024:
            raise ValueError(f"max_bytes={max_bytes} is too small for an SQLite outbox: give at "
                             "least 65536 (1 MiB or more in practice)")
        self.path, self.max_bytes, self.when_full = Path(path), max_bytes, when_full
        self.metrics, self.clock = metrics, clock
        self.dropped: Counter[str] = Counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.stored = threading.Event()  # set by put(): wakes an idle forwarder at once
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: in WAL mode NORMAL survives a process crash but can lose the last
        # commits on power loss, and an edge box loses power; we ack MQTT right after put(), so
        # the commit must be on disk first. Cost: one fsync per put() batch, not per result.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA journal_size_limit=8388608")  # truncate the WAL back to 8 MiB
        _open_schema(self._db, self.path)
        self._page_size = self._db.execute("PRAGMA page_size").fetchone()[0]

    def put(self, results: Sequence[Result]) -> None:
        """Store ``results`` durably (committed and fsynced before returning).

        Raises ``OutboxFullError`` under the "reject" policy when they do not fit.
        """
        rows = [(*r.key(), r.to_json()) for r in results]  # (*key, body)
        if not rows:
            return
        need = sum(len(row[5]) + 2 * sum(map(len, row[:4])) + 64 for row in rows)  # + the index
        with self._lock:
            for _ in range(3):  # an estimate first, then the growth actually measured
                self._make_room(need)
                grown = self._insert(rows)
                if grown is None:
                    break
                need = max(need + 4 * self._page_size, grown)
            else:
                raise OutboxFullError(f"outbox {self.path}: {len(rows)} results do not fit in "
                                      f"max_bytes={self.max_bytes}; raise outbox.max_bytes")
        self.stored.set()
        self.refresh_metrics()

    def _insert(self, rows: list[tuple[str, str, str, str, int, str]]) -> int | None:
        """Insert and commit if the quota holds (None); else roll back, return the growth."""
        before = self._used_bytes()
        now = self.clock()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO outbox (site, asset, bearing, sensor, start_ns, body, "
                "created_s, state) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                [(*row, now) for row in rows])
            after = self._used_bytes()
            if after <= self.max_bytes:
                self._db.execute("COMMIT")
                return None
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("ROLLBACK")
        return max(0, after - before)

    def claim(self, limit: int) -> list[tuple[int, Result]]:
        """The oldest ``limit`` pending results with their row ids (rows stay pending).

        One forwarder drains the outbox; after a crash, unmarked rows are simply sent again.
        """
        if limit < 1:
            raise ValueError(f"limit={limit} must be >= 1")
        with self._lock:
            rows = self._db.execute("SELECT id, body FROM outbox WHERE state = 0 ORDER BY id "
                                    "LIMIT ?", (limit,)).fetchall()
        return [(row_id, Result.from_json(body)) for row_id, body in rows]

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Mark rows as delivered to every sink (ids of replaced rows match nothing)."""
        self._set_state(ids, SENT, None)

    def set_aside(self, row_id: int, reason: str) -> None:
        """Take a row out of the queue because a sink refused it for good, keeping ``reason``."""
        self._set_state([row_id], SET_ASIDE, reason)

    def depth(self) -> int:
        """Number of pending results."""
        return self._scalar("SELECT COUNT(*) FROM outbox WHERE state = 0")

    def oldest_age_s(self) -> float | None:
        """Seconds since the oldest pending result was stored, or None when none is pending."""
        created = self._scalar("SELECT MIN(created_s) FROM outbox WHERE state = 0")
        return None if created is None else max(0.0, self.clock() - created)

    def size_bytes(self) -> int:
        """Bytes in use by the database (the quota measure; excludes free pages)."""
        with self._lock:
            return self._used_bytes()

    def set_aside_rows(self) -> list[tuple[int, str, Result]]:
        """Every set-aside row as (id, reason, result), oldest first, for inspection."""
        with self._lock:
            rows = self._db.execute("SELECT id, reason, body FROM outbox WHERE state = 2 "
                                    "ORDER BY id").fetchall()
        return [(i, reason, Result.from_json(body)) for i, reason, body in rows]

    def results_since(self, after_id: int = 0,
                      limit: int | None = None) -> list[tuple[int, Result, float]]:
        """Every stored row (any state) with id > ``after_id`` as (id, result, created_s).

        Read-only; ids grow, so pass the last id seen to follow the stream. A redelivered
        window's row gets a new id and shows up again (the same ``key()``).

        Example:
            >>> import tempfile
            >>> box = Outbox(Path(tempfile.mkdtemp()) / "o.sqlite3")
            >>> [(i, r.predicted) for i, r, _ in box.results_since(0)]
            []
            >>> box.close()
        """
        with self._lock:
            return _select_since(self._db, after_id, limit)

    def recent(self, limit: int = 20) -> list[tuple[int, Result, float]]:
        """The newest ``limit`` rows (any state) as (id, result, created_s), oldest first."""
        if limit < 1:
            raise ValueError(f"limit={limit} must be >= 1")
        with self._lock:
            rows = self._db.execute("SELECT id, body, created_s FROM outbox ORDER BY id DESC "
                                    "LIMIT ?", (limit,)).fetchall()
        return [(i, Result.from_json(body), float(c)) for i, body, c in reversed(rows)]

    def close(self) -> None:
        """Checkpoint the WAL and close the connection."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def _set_state(self, ids: Sequence[int], state: int, reason: str | None) -> None:
        if not ids:
            return
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE outbox SET state = ?, reason = ? WHERE id = ? AND "
                                 "state = 0", [(state, reason, i) for i in ids])
        self.refresh_metrics()

    def _scalar(self, sql: str) -> Any:
        with self._lock:
            return self._db.execute(sql).fetchone()[0]

    def _used_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._page_size

    def _make_room(self, need: int) -> None:
        """Apply the quota policy (caller holds the lock) so ``need`` more bytes fit."""
        steps = [(SENT, None), (SET_ASIDE, "set_aside")]
        if self.when_full == "drop_oldest":
            steps.append((PENDING, "pending"))
        for state, counted in steps:
            while self._used_bytes() + need > self.max_bytes:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    gone = self._db.execute(
                        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = ? "
                        "ORDER BY id LIMIT 64)", (state,)).rowcount
                if gone == 0:
                    break
                if counted:
                    self._count_drop(counted, gone)
        if self._used_bytes() + need > self.max_bytes:
            raise OutboxFullError(
                f"outbox {self.path} holds {self._used_bytes()} of max_bytes={self.max_bytes} in "
                f"unsent results and cannot take {need} more bytes: the sinks are behind; raise "
                "outbox.max_bytes or fix the sink (the broker keeps the windows meanwhile)")

    def _count_drop(self, what: str, n: int) -> None:
        self.dropped[what] += n
        if self.metrics is not None:
            self.metrics.outbox_dropped_total.labels(reason=what).inc(n)

    def refresh_metrics(self) -> None:
        """Set the outbox gauges (depth, oldest age, size) on ``metrics``, when given."""
        if self.metrics is None:
            return
        self.metrics.outbox_depth.set(self.depth())
        self.metrics.outbox_oldest_age_seconds.set(self.oldest_age_s() or 0.0)
        self.metrics.outbox_size_bytes.set(self.size_bytes())


def _open_schema(db: sqlite3.Connection, path: Path) -> None:
    """Create the current schema in a new file, or migrate an older one (in one transaction)."""
    db.execute("BEGIN IMMEDIATE")  # checked and changed under the write lock: one migrator
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'outbox'").fetchone() is not None
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"outbox {path} has schema version {version}, newer than this slewguard's "
                f"{SCHEMA_VERSION}: run the newer slewguard, or point outbox.path at a new file "
                "(the old one still holds its unsent results)")
        if not exists:
            _create(db)
        elif version == 0:
            _migrate_v0(db)
        if version != SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _create(db: sqlite3.Connection) -> None:
    # statement by statement: executescript() would COMMIT the open transaction first
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_v0(db: sqlite3.Connection) -> None:
    """Version 0 -> 1: fill site/asset/bearing from each row's body, keep ids and the sequence.

    Old rows were unique on (sensor, start_ns), so they are unique on the wider key too: no row
    is lost. A body that does not parse keeps empty names (claim() reports it as before).
    """
    seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    rows = db.execute("SELECT id, sensor, start_ns, body, created_s, state, reason "
                      "FROM outbox ORDER BY id").fetchall()
    db.execute("DROP TABLE outbox")  # its index and sqlite_sequence entry go with it
    _create(db)
    db.executemany(f"INSERT INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(i, *_place(body), sensor, start_ns, body, created, state, reason)
                    for i, sensor, start_ns, body, created, state, reason in rows])
    if seq is not None:  # new ids stay above every id ever used, as AUTOINCREMENT promises
        db.execute("DELETE FROM sqlite_sequence WHERE name = 'outbox'")
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", seq)


def _place(body: str) -> tuple[str, str, str]:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return ("", "", "")
    return tuple(str(doc.get(name, "")) for name in ("site", "asset", "bearing"))


def _select_since(db: sqlite3.Connection, after_id: int,
                  limit: int | None) -> list[tuple[int, Result, float]]:
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} must be >= 1 (or None for all)")
    rows = db.execute("SELECT id, body, created_s FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                      (int(after_id), -1 if limit is None else int(limit))).fetchall()
    return [(i, Result.from_json(body), float(c)) for i, body, c in rows]


def read_results(path: str | Path, after_id: int = 0,
                 limit: int | None = None) -> list[tuple[int, Result, float]]:
    """``Outbox.results_since`` from another reader: opens ``path`` read-only, never writes.

    Returns [] while the file or its table does not exist yet (the daemon is starting).

    Example:
        >>> read_results("/nonexistent/outbox.sqlite3")
        []
    """
    path = Path(path)
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return _select_since(db, after_id, limit)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        db.close()
