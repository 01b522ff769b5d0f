"""The pipeline's intake: a queue bounded in messages and payload bytes, taken in micro-batches.

``put`` blocks while the queue holds ``max_messages`` messages or adding the message would pass
``max_bytes`` payload bytes (one larger message still passes into an empty queue), so a slow
model stops intake instead of growing memory. ``take`` returns up to ``max_batch`` messages:
whatever arrived within ``max_wait_s`` of the first. Both set the queue-depth gauge.

Example:
    >>> from prometheus_client import CollectorRegistry, Gauge
    >>> depth = Gauge("depth", "queued messages", registry=CollectorRegistry())
    >>> intake = BatchQueue(max_messages=4, max_bytes=100, max_batch=2, max_wait_s=0.0,
    ...                     depth=depth)
    >>> closing = threading.Event()
    >>> all(intake.put(Inbound("t", b"x" * 10, mid, 1, 0.0, 1), closing) for mid in (1, 2, 3))
    True
    >>> [m.mid for m in intake.take()], intake.qsize()
    ([1, 2], 1)
"""

from __future__ import annotations

import queue
import threading
import time

from prometheus_client import Gauge

from slewguard.service.ingest import Inbound


class BatchQueue:
    """Bounded by ``max_messages`` and ``max_bytes``; ``take`` returns a micro-batch."""

    def __init__(self, max_messages: int, max_bytes: int, max_batch: int, max_wait_s: float,
                 depth: Gauge) -> None:
        self.max_bytes = max_bytes
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=max_messages)
        self._queued = 0  # payload bytes in self._queue
        self._room = threading.Condition()  # guards _queued; notified when a batch is taken
        self._depth = depth

    def qsize(self) -> int:
        """Messages queued now."""
        return self._queue.qsize()

    def put(self, inbound: Inbound, closing: threading.Event) -> bool:
        """Queue a message, blocking while the queue is full; False (not queued) once
        ``closing`` is set."""
        size = len(inbound.payload)
        while not closing.is_set():
            with self._room:  # every producer puts under it: full() cannot go stale
                if self._queue.full() or (self._queued and
                                          self._queued + size > self.max_bytes):
                    self._room.wait(timeout=0.1)  # until a batch is taken
                    continue
                self._queue.put_nowait(inbound)
                self._queued += size
            self._depth.set(self._queue.qsize())
            return True
        return False

    def take(self) -> list[Inbound]:
        """Up to ``max_batch`` messages, waiting 0.1 s for the first and ``max_wait_s`` after it
        for the rest; [] when none came."""
        try:
            batch = [self._queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0
                             else self._queue.get_nowait())
            except queue.Empty:
                break
        self._taken(batch)
        self._depth.set(self._queue.qsize())
        return batch

    def _taken(self, batch: list[Inbound]) -> None:
        """Give the batch's bytes back to the budget."""
        with self._room:
            self._queued -= sum(len(m.payload) for m in batch)
            self._room.notify_all()
