"""The alert sink: the forwarder feeds the alerting stage (``service.alerts``) through it.

``AlertSink`` votes with each result (``alerts.Voter``), exports the bearing states as gauges
(``alerts.AlertMetrics``) and queues the events for every webhook in the same SQLite transaction
as the states (``sinks.webhook.WebhookQueue``, at ``queue_path``); a delivery thread per daemon
sends them (``sinks.webhook.WebhookDelivery``). ``build`` makes it from the ``alerts`` section,
none when ``alerts.enabled`` is false.

Example:
    >>> import paho.mqtt.client as mqtt
    >>> from slewguard.service.config import config_from_dict
    >>> from slewguard.service.metrics import Metrics
    >>> from slewguard.service.sinks.registry import SinkContext
    >>> config = config_from_dict({"site": "y", "sensors": [{"sensor_id": "s",
    ...     "bearing": "cwru-6205"}], "alerts": {"enabled": False}}, env={})
    >>> build(SinkContext(config, Metrics(), mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)))
    []
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from slewguard.service.alerts import AlertMetrics, Tracker, Voter
from slewguard.service.config.alerts import AlertsConfig
from slewguard.service.result import Result
from slewguard.service.sinks import RetryableSinkError, Sink
from slewguard.service.sinks.webhook import WebhookDelivery, WebhookQueue

if TYPE_CHECKING:
    from slewguard.service.config import ServiceConfig
    from slewguard.service.sinks.registry import SinkContext

log = logging.getLogger("slewguard.service.alerts")  # the alerting stage's: its lines keep it


class AlertSink:
    """A Sink: votes, exports the gauges, and queues events for the webhooks (durably).

    Example:
        >>> import tempfile
        >>> from slewguard.service.config.alerts import AlertsConfig
        >>> sink = AlertSink(AlertsConfig(), Path(tempfile.mkdtemp()) / "alerts.sqlite3")
        >>> sink.name, sink.write([])
        ('alerts', None)
        >>> sink.close()
    """

    name = "alerts"
    _open: set[Path] = set()  # two sinks on one queue would send every ticket twice

    def __init__(self, config: AlertsConfig, queue_path: Path,
                 registry: CollectorRegistry | None = None, **delivery: Any) -> None:
        self.path = Path(queue_path).resolve()
        if self.path in AlertSink._open:
            raise ValueError(f"queue_path={str(queue_path)!r} is already used by an open "
                             "AlertSink: build one alert sink per daemon (close the old one "
                             "first on reload)")
        self.config = config
        self.queue = WebhookQueue(queue_path)
        AlertSink._open.add(self.path)
        self.metrics = AlertMetrics(registry if registry is not None else CollectorRegistry())
        self.voter = Voter(config, self.queue.states())
        for t in self.voter.trackers.values():
            self.metrics.show(t)
        self.delivery = WebhookDelivery(self.queue, config.webhooks, self.metrics, **delivery)

    def write(self, results: Sequence[Result]) -> None:
        """Vote with each new result; queue the events and store the states atomically."""
        events: list[dict] = []
        touched: dict[str, Tracker] = {}
        for r in sorted(results, key=lambda r: r.start_ns):
            events += self.voter.feed(r)
            t = self.voter.tracker(r)
            touched[t.key] = t
        try:
            self.queue.commit({w.name: events for w in self.config.webhooks},
                              {k: asdict(t) for k, t in touched.items()})
        except Exception as exc:  # sqlite: disk full, locked; votes replay from the outbox
            self.voter = Voter(self.config, self.queue.states())
            raise RetryableSinkError("alert_queue", f"{type(exc).__name__}: {exc}") from exc
        for line in self.voter.changes:  # after the commit: a replayed batch logs once
            log.info("%s", line)
        self.voter.changes.clear()
        for e in events:
            self.metrics.alert_events_total.labels(event=e["event"]).inc()
        for t in touched.values():
            self.metrics.show(t)
        if events:
            self.delivery.wake.set()

    def start(self) -> AlertSink:
        """Start the webhook delivery thread."""
        self.delivery.start()
        return self

    def close(self) -> None:
        """Stop delivering (undelivered events stay queued) and close the queue."""
        self.delivery.close()
        self.queue.close()
        AlertSink._open.discard(self.path)


def queue_path(config: ServiceConfig) -> Path:
    """Where the webhook queue lives: ``alerts.queue_path``, else beside the outbox.

    Example:
        >>> from slewguard.service.config import ServiceConfig
        >>> c = ServiceConfig(site="yard1", sensors=[{"topic_filter": "p/+/+/+/+/vib",
        ...                                          "bearing": "cwru-6205"}],
        ...                   outbox={"path": "/var/lib/slewguard/outbox.sqlite3"})
        >>> str(queue_path(c))
        '/var/lib/slewguard/outbox-alerts.sqlite3'
    """
    if config.alerts.queue_path is not None:
        return Path(config.alerts.queue_path)
    outbox = Path(config.outbox.path)
    return outbox.with_name(f"{outbox.stem}-alerts.sqlite3")


def build(context: SinkContext) -> list[Sink]:
    """The started AlertSink for ``context.config.alerts`` (none when disabled); it continues
    the webhook outages of an ``AlertSink`` in ``context.replaces`` (closed by a reload)."""
    c = context.config.alerts
    if not c.enabled:
        return []
    sink = AlertSink(c, queue_path(context.config), context.metrics.registry)
    for old in context.replaces:
        if isinstance(old, AlertSink):  # before start: the first attempt already knows
            sink.delivery.take_over(old.delivery)
    return [sink.start()]
