"""The daemon's one-line INFO status, every ``logging.status_interval_s``: what an operator
reads in the log without opening /metrics.

The line covers the time since the previous one: windows diagnosed per second, windows
rejected, messages dead-lettered, and the present queue, outbox and broker state, e.g.

    status: 8.0 windows/s (2400 in 300 s), 0 rejected, queue 3/256, outbox 12 pending (oldest
    1.5 s), dead letters 0 (+0), broker connected

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from slewguard.service.metrics import Metrics
    >>> from slewguard.service.outbox import Outbox
    >>> m, t = Metrics(), iter([0.0, 10.0])
    >>> status = StatusLine(m, Outbox(Path(tempfile.mkdtemp()) / "o.sqlite3"), 256,
    ...                     clock=lambda: next(t))
    >>> m.windows_processed_total.inc(20)
    >>> status.line()[:45]
    'status: 2.0 windows/s (20 in 10 s), 0 rejecte'
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from slewguard.service.metrics import gauge_value

if TYPE_CHECKING:
    from prometheus_client import Counter

    from slewguard.service.metrics import Metrics

log = logging.getLogger(__name__)


def counter_total(counter: Counter) -> float:
    """Sum of a prometheus Counter over all its label values.

    Example:
        >>> from slewguard.service.metrics import Metrics
        >>> m = Metrics(); m.dead_letters_total.labels(reason="decode").inc(2)
        >>> counter_total(m.dead_letters_total)
        2.0
    """
    return sum(s.value for metric in counter.collect() for s in metric.samples
               if s.name.endswith("_total"))


class OutboxState(Protocol):
    """What the status line reads of the outbox (``service.outbox.Outbox`` has both)."""

    def depth(self) -> int: ...

    def oldest_age_s(self) -> float | None: ...


class StatusLine:
    """Formats the status line from ``metrics`` and ``outbox`` (any ``OutboxState``: an object
    with ``depth()`` and ``oldest_age_s()``); each ``line()`` covers the time since the previous
    one. The gauges are read as attributes of ``metrics`` (``metrics.gauge_value``), so a
    misspelt metric fails loudly instead of reading "NOT connected" or an empty queue."""

    def __init__(self, metrics: Metrics, outbox: OutboxState, queue_size: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics, self.outbox, self.queue_size, self.clock = metrics, outbox, queue_size, clock
        self._since = (clock(), *self._counts())

    def _counts(self) -> tuple[float, float, float]:
        m = self.metrics
        return (counter_total(m.windows_processed_total), counter_total(m.windows_rejected_total),
                counter_total(m.dead_letters_total))

    def line(self) -> str:
        """The status since the previous call (or since construction)."""
        now, (processed, rejected, dead) = self.clock(), self._counts()
        then, processed0, rejected0, dead0 = self._since
        self._since = (now, processed, rejected, dead)
        span = max(now - then, 1e-9)
        done = processed - processed0
        depth, age = self.outbox.depth(), self.outbox.oldest_age_s()
        outbox = f"outbox {depth} pending (oldest {age or 0:.1f} s)" if depth else "outbox empty"
        broker = "connected" if gauge_value(self.metrics.mqtt_connected) else "NOT connected"
        queue = gauge_value(self.metrics.queue_depth)
        return (f"status: {done / span:.1f} windows/s ({done:.0f} in {span:.0f} s), "
                f"{rejected - rejected0:.0f} rejected, queue {queue:.0f}/{self.queue_size}, "
                f"{outbox}, dead letters {dead:.0f} (+{dead - dead0:.0f}), broker {broker}")


def log_status(status: StatusLine, interval_s: float, stop: threading.Event) -> None:
    """Log ``status.line()`` at INFO every ``interval_s`` until ``stop`` is set (a thread's
    target); a failing line is logged once per interval, never raised."""
    while not stop.wait(interval_s):
        try:
            log.info("%s", status.line())
        except Exception as exc:  # e.g. the outbox closing under us at stop: keep serving
            log.warning("status line failed: %s: %s", type(exc).__name__, exc)
