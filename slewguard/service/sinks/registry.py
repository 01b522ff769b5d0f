"""The sinks the daemon builds, by key, in the order the forwarder writes to them.

Each entry takes a ``SinkContext`` (the config, the metrics, the results connection and, on a
reload, the sinks being replaced) and returns the sinks it makes, none when its section is off:
``alerts`` first (an alert must not wait on a database outage), then ``mqtt`` (results on the
broker), then ``influx``. A new sink is a module in this package with its own config section
and one entry here.

Example:
    >>> list(SINKS)
    ['alerts', 'mqtt', 'influx']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slewguard.service.sinks import Sink


@dataclass(frozen=True)
class SinkContext:
    """What a sink builder may use."""

    config: Any  # ServiceConfig
    metrics: Any  # service.metrics.Metrics
    results_client: Any  # the publish-only MQTT client (service.publisher.publisher_client)
    replaces: Sequence[Sink] = ()  # on a reload, the closed sinks these take over from


def _alerts(ctx: SinkContext) -> list[Sink]:
    from slewguard.service.alerts import build_alert_sinks

    return list(build_alert_sinks(ctx.config, ctx.metrics, ctx.replaces))


def _mqtt(ctx: SinkContext) -> list[Sink]:
    from slewguard.service.sinks.mqtt import MqttResultSink

    return [MqttResultSink(ctx.results_client, ctx.config.mqtt.results_prefix)]


def _influx(ctx: SinkContext) -> list[Sink]:
    if ctx.config.influx is None:
        return []
    from slewguard.service.sinks.influx import InfluxSink

    return [InfluxSink(ctx.config.influx)]


SINKS: dict[str, Callable[[SinkContext], list[Sink]]] = {
    "alerts": _alerts, "mqtt": _mqtt, "influx": _influx}


def build_sinks(ctx: SinkContext) -> list[Sink]:
    """Every configured sink, in SINKS order."""
    return [sink for build in SINKS.values() for sink in build(ctx)]
