"""The forwarder: drains the outbox into every sink, in batches, until the stop event is set.

A batch goes to each sink in turn and is marked sent only when all of them took it. On a
``RetryableSinkError`` the batch stays pending and the forwarder waits an exponentially growing,
jittered delay (sinks are idempotent, so a sink that already took the batch just overwrites it
next time). On a ``PermanentSinkError`` the batch is bisected until the refused results are
isolated; those are set aside with the reason, the rest are delivered. Any other exception is a
bug in a sink: it is logged once with its traceback, counted as outcome "error" and retried like
a retryable one, so it blocks the queue visibly (outbox age) instead of losing data.

Each sink's health is logged by a ``SinkHealth`` (``sinks.health``): one WARNING when it goes
down (and one per new kind of error), a reminder every ``health.OUTAGE_REMIND_S`` while it
stays down, one INFO when it recovers; never a line per attempt.

Example:
    >>> import tempfile, threading
    >>> from pathlib import Path
    >>> from slewguard.service.outbox import Outbox
    >>> box = Outbox(Path(tempfile.mkdtemp()) / "o.db")
    >>> class Collect:
    ...     name, got = "collect", []
    ...     def write(self, results):
    ...         self.got.extend(results)
    >>> Forwarder(box, [Collect()]).step()  # nothing pending: wait idle_s
    1.0
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from slewguard.service.outbox import Outbox
from slewguard.service.result import Result
from slewguard.service.sinks import PermanentSinkError, RetryableSinkError, Sink
from slewguard.service.sinks.health import SinkHealth

if TYPE_CHECKING:
    from slewguard.service.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Exponential backoff with jitter: attempt k waits min_s * factor**k, capped at max_s, then
    shortened by a random fraction up to ``jitter`` so many daemons do not retry in step.

    Example:
        >>> b = Backoff(min_s=1, max_s=8, jitter=0.0)
        >>> [b.next_delay() for _ in range(5)]
        [1.0, 2.0, 4.0, 8.0, 8.0]
    """

    min_s: float = 0.5
    max_s: float = 60.0
    factor: float = 2.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"min_s={self.min_s}, max_s={self.max_s}: need 0 < min_s <= max_s")
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"factor={self.factor} must be >= 1 and jitter={self.jitter} in "
                             "[0, 1)")

    def next_delay(self) -> float:
        """The delay before the next retry, in seconds (grows with each call)."""
        base = min(self.max_s, self.min_s * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """Back to ``min_s`` after a success."""
        self.attempt = 0


class _SinkBugError(Exception):
    """A sink raised something other than a SinkError; already logged by ``Forwarder._write``."""


def _wait_either(wake: threading.Event, stop: threading.Event, timeout_s: float) -> None:
    """Wait until ``wake`` or ``stop`` is set, or ``timeout_s`` passes (stop seen within 50 ms)."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or wake.wait(min(0.05, remaining)):
            return


class Forwarder:
    """Moves results from ``outbox`` to ``sinks``; ``run`` loops, ``step`` does one batch.

    ``metrics``: the daemon's ``service.metrics.Metrics`` (``sink_writes_total``,
    ``sink_write_seconds``, ``outbox_set_aside_total``), or None for none.
    """

    def __init__(self, outbox: Outbox, sinks: Sequence[Sink], metrics: Metrics | None = None,
                 batch_size: int = 500, backoff: Backoff | None = None, idle_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.outbox, self.sinks, self.metrics = outbox, list(sinks), metrics
        self.batch_size, self.idle_s = batch_size, idle_s
        self.backoff = backoff or Backoff()
        self.clock, self.sleep = clock, sleep
        self.health: dict[int, SinkHealth] = {}  # by id(sink), made on first write
        self.idle = False  # the last step found the outbox empty

    def run(self, stop: threading.Event) -> None:
        """Drain until ``stop`` is set; waits use ``sleep`` if given, else ``stop.wait``.

        When idle it waits at most ``idle_s`` and wakes as soon as the outbox stores results
        (``outbox.stored``), so a result leaves within milliseconds of its ack; backoff waits
        after a failed write are not shortened.
        """
        wake = getattr(self.outbox, "stored", None)
        while not stop.is_set():
            if wake is not None:
                wake.clear()  # before claiming: a put after this point wakes the next wait
            delay = self.step()
            if delay <= 0:
                continue
            if self.sleep is not None:
                self.sleep(delay)
            elif wake is not None and self.idle:
                _wait_either(wake, stop, delay)
            else:
                stop.wait(delay)

    def step(self) -> float:
        """Forward one batch; returns how long to wait before the next step, in seconds."""
        self.outbox.refresh_metrics()
        rows = self.outbox.claim(self.batch_size)
        self.idle = not rows
        if not rows:
            return self.idle_s
        try:
            self._deliver(rows)
        except (RetryableSinkError, _SinkBugError):  # logged by the sink's health: keep the data
            return self.backoff.next_delay()
        except Exception:  # the outbox failed (disk full, locked): keep trying, visibly
            log.exception("forwarding a batch of %d results failed", len(rows))
            return self.backoff.next_delay()
        self.backoff.reset()
        return 0.0

    def take_over(self, previous: Forwarder) -> None:
        """Continue the outages of ``previous`` (stopped by a reload) for sinks of the same name,
        so an outage that spans the reload is one warning and one recovery.

        Example:
            >>> class Influx:
            ...     name = "influx"
            >>> box = Outbox(":memory:")
            >>> old, new = Forwarder(box, [Influx()]), Forwarder(box, [Influx()])
            >>> old.sink_health(old.sinks[0]).failed("connection", "refused")  # "... is down"
            True
            >>> new.take_over(old)
            >>> new.sink_health(new.sinks[0]).down_since is not None
            True
        """
        for old in previous.health.values():
            for sink in self.sinks:
                if sink.name == old.name:
                    self.sink_health(sink).carry_over(old)

    def sink_health(self, sink: Sink) -> SinkHealth:
        """The ``SinkHealth`` that logs ``sink``'s outages (made on first use)."""
        health = self.health.get(id(sink))
        if health is None:
            health = self.health[id(sink)] = SinkHealth(sink.name, self.clock,
                                                        self.outbox.depth, logger=log)
        return health

    def _deliver(self, rows: list[tuple[int, Result]]) -> None:
        """Write ``rows`` to every sink, bisecting on permanent errors; marks what got through."""
        results = [r for _, r in rows]
        try:
            for sink in self.sinks:
                self._write(sink, results)
        except PermanentSinkError as exc:
            if len(rows) == 1:
                self.outbox.set_aside(rows[0][0], exc.reason)
                if self.metrics is not None:
                    self.metrics.outbox_set_aside_total.labels(reason=exc.reason).inc()
                log.error("set aside result %s: %s", rows[0][1].key(), exc)
                return
            half = len(rows) // 2
            self._deliver(rows[:half])
            self._deliver(rows[half:])
            return
        self.outbox.mark_sent([row_id for row_id, _ in rows])

    def _write(self, sink: Sink, results: list[Result]) -> None:
        """``sink.write(results)``, counted, timed and reported to the sink's health."""
        started = self.clock()
        outcome = "error"
        health = self.sink_health(sink)
        try:
            sink.write(results)
            outcome = "ok"
        except RetryableSinkError as exc:
            outcome = "retry"
            health.failed(exc.reason, f"{exc}")
            raise
        except PermanentSinkError:  # the sink answered: neither down nor recovered
            outcome = "permanent"
            raise
        except Exception as exc:  # a sink bug: its traceback once per outage and kind
            if health.failed(type(exc).__name__, f"{type(exc).__name__}: {exc}"):
                log.exception("sink %s raised %s on a batch of %d results", sink.name,
                              type(exc).__name__, len(results))
            raise _SinkBugError(sink.name) from exc
        finally:
            if self.metrics is not None:
                self.metrics.sink_writes_total.labels(sink=sink.name, outcome=outcome).inc()
                self.metrics.sink_write_seconds.labels(sink=sink.name).observe(
                    max(0.0, self.clock() - started))
        health.delivered(len(results))

