"""Outage logging shared by the forwarder's sinks and the alert webhooks.

A ``SinkHealth`` logs one destination's outages: one WARNING when it goes down (and one per new
kind of error), a reminder every ``OUTAGE_REMIND_S`` while it stays down, one INFO when it
recovers; never a line per attempt. The recovery line waits until the backlog that piled up in
the outage is delivered, so it says how much went out (not just the first write's share).
Errors are logged on one line with credentials masked (``one_line``). The wording (``DOWN``,
``NEW_ERROR``, ``REMIND``, ``RECOVERED``) and the logger belong to the caller: the forwarder's
lines name a sink and its outbox, the webhooks' lines (``sinks.webhook.WebhookHealth``) a
webhook and its queue.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

from slewguard.service.redact import redact_urls

log = logging.getLogger(__name__)
OUTAGE_REMIND_S = 300.0  # reminder interval while a sink stays down
ERROR_MAX_CHARS = 400  # an error is logged on one line, cut to this length


def one_line(error: str) -> str:
    """``error`` on one line, cut to ``ERROR_MAX_CHARS``, with credentials masked.

    Example:
        >>> one_line("http://admin:pw@db:8086 refused\\n  retry later")
        'http://***@db:8086 refused retry later'
    """
    text = " ".join(redact_urls(error).split())
    return text if len(text) <= ERROR_MAX_CHARS else text[:ERROR_MAX_CHARS - 3] + "..."


class SinkHealth:
    """Logs one sink's outages: its first failure and each new kind of error (``reason``) at
    WARNING, a reminder every ``remind_s`` while it stays down, its recovery at INFO.

    ``pending()`` gives the backlog for the lines; ``clock`` is in seconds; ``logger`` is the
    caller's (default: the class's ``LOG``). A subclass changes the wording through the four
    templates, keeping their arguments, and may name its own ``LOG``.

    Example:
        >>> t = [0.0]
        >>> h = SinkHealth("influx", lambda: t[0], pending=lambda: 7)
        >>> h.failed("connection", "connection: refused")  # logs "sink influx is down, ..."
        True
        >>> t[0] = 42.0
        >>> h.failed("connection", "connection: refused"), h.down_since
        (False, 0.0)
        >>> h.delivered(7)  # the whole backlog: logs "sink influx recovered after 42 s ..."
        >>> h.down_since is None
        True
    """

    # (name, pending, error)
    DOWN = "sink %s is down, %d results wait in the outbox (retrying with backoff): %s"
    # (name, seconds down, error)
    NEW_ERROR = "sink %s still down after %.0f s, new error: %s"
    # (name, seconds down, failed attempts, pending, error)
    REMIND = ("sink %s still down after %.0f s (failed writes: %d), %d results wait in the "
              "outbox; last error: %s")
    # (name, seconds down, failed attempts, delivered, pending after them)
    RECOVERED = ("sink %s recovered after %.0f s (failed writes: %d); %d results delivered, "
                 "%d more wait in the outbox")

    LOG = log
    # what one outage is: carried over to a rebuilt sink's health (``carry_over``)
    OUTAGE_STATE = ("down_since", "attempts", "_seen", "_last_log_s", "_backlog", "_drained",
                    "_outage_s")

    def __init__(self, name: str, clock: Callable[[], float], pending: Callable[[], int],
                 remind_s: float = OUTAGE_REMIND_S, logger: logging.Logger | None = None) -> None:
        self.name, self.clock, self.pending, self.remind_s = name, clock, pending, remind_s
        self.log = logger or self.LOG
        self.down_since: float | None = None
        self.attempts = 0  # failed writes in this outage
        self._seen: set[str] = set()
        self._last_log_s = 0.0
        self._backlog: int | None = None  # after an outage: what waited at the first success
        self._drained = 0  # delivered since that first success
        self._outage_s = 0.0  # first failure to first success

    def failed(self, reason: str, error: str) -> bool:
        """Record one failed write; returns True when ``reason`` is new in this outage."""
        now, error = self.clock(), one_line(error)
        if self._backlog is not None:  # down again before the backlog went: close the last one
            self._recovered(self.pending())
        self.attempts += 1
        if self.down_since is None:
            self.down_since, self._last_log_s, self._seen = now, now, {reason}
            self.log.warning(self.DOWN, self.name, self.pending(), error)
            return True
        if reason not in self._seen:
            self._seen.add(reason)
            self._last_log_s = now
            self.log.warning(self.NEW_ERROR, self.name, now - self.down_since, error)
            return True
        if now - self._last_log_s >= self.remind_s:
            self._last_log_s = now
            self.log.warning(self.REMIND, self.name, now - self.down_since, self.attempts,
                             self.pending(), error)
        return False

    def delivered(self, count: int) -> None:
        """Record a successful write of ``count`` results (still counted in ``pending()``).

        The first one after an outage ends it; the recovery is logged once as many results as
        waited then have gone out (or nothing more waits), with their number."""
        if self.down_since is not None:
            self._outage_s = self.clock() - self.down_since
            self._backlog, self._drained, self.down_since = self.pending(), 0, None
        if self._backlog is None:
            return
        self._drained += count
        waiting = max(0, self.pending() - count)
        if self._drained >= self._backlog or waiting == 0:
            self._recovered(waiting)

    def carry_over(self, previous: SinkHealth) -> None:
        """Take over ``previous``'s outage (a reload rebuilt the sink): an outage that spans the
        reload is still one warning and one recovery.

        Example:
            >>> old = SinkHealth("influx", lambda: 0.0, pending=lambda: 1)
            >>> old.failed("connection", "refused")  # logs "sink influx is down, ..."
            True
            >>> new = SinkHealth("influx", lambda: 9.0, pending=lambda: 1)
            >>> new.carry_over(old)
            >>> new.failed("connection", "refused"), new.down_since, new.attempts
            (False, 0.0, 2)
        """
        for name in self.OUTAGE_STATE:
            setattr(self, name, copy.copy(getattr(previous, name)))

    def _recovered(self, waiting: int) -> None:
        self.log.info(self.RECOVERED, self.name, self._outage_s, self.attempts, self._drained,
                      waiting)
        self._backlog, self.attempts = None, 0
