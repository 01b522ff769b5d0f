"""Sinks: where results go after the outbox. A sink has a ``name`` and one method, ``write``.

``write(results)`` either stores every result or raises: ``RetryableSinkError`` when trying the
same batch later can succeed (connection refused, timeout, HTTP 5xx/429, auth or bucket
misconfiguration an operator can fix) or ``PermanentSinkError`` when this data will never be
accepted (HTTP 400/413/422). Writes must be idempotent per ``Result.key()``: the forwarder
retries whole batches.

Example:
    >>> class Printer:
    ...     name = "print"
    ...     def write(self, results):
    ...         for r in results:
    ...             print(r.sensor, r.predicted)
    >>> isinstance(Printer(), Sink)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from slewguard.service.result import Result


class SinkError(Exception):
    """Base of the two outcomes a sink may report; ``reason`` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class RetryableSinkError(SinkError):
    """Try the same batch again later (with backoff)."""


class PermanentSinkError(SinkError):
    """The sink will never accept this data; set it aside with ``reason``."""


@runtime_checkable
class Sink(Protocol):
    """Anything with a ``name`` (metric label) and an idempotent ``write``."""

    name: str

    def write(self, results: Sequence[Result]) -> None:
        """Store every result or raise RetryableSinkError / PermanentSinkError."""
        ...
