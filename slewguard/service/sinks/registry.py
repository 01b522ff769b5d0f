"""The sinks the daemon builds, by key, in the order the forwarder writes to them.

A sink is a module in this package with a function ``build(context: SinkContext) ->
list[Sink]``, registered here under its key (``SINKS``: key -> that module's path). ``build``
reads its own section of the config and returns the sinks it makes, none when its section is
off. The app builds every sink in one loop over ``SINKS`` (``build_sinks``), at start and on
each reload (SIGHUP), in this fixed order:

1. ``alerts`` (``sinks/alerts.py``, section ``alerts``): first, so an alert never waits on a
   database outage;
2. ``mqtt`` (``sinks/mqtt.py``, section ``mqtt``): results on the broker, always on;
3. ``influx`` (``sinks/influx.py``, section ``influx``): the database, when configured.

A module is imported only when the sinks are built, so ``SINKS`` costs nothing to import;
``register`` adds a sink after these (a module path or a ``build`` function).

Example:
    >>> list(SINKS)
    ['alerts', 'mqtt', 'influx']
    >>> builder("mqtt").__module__
    'slewguard.service.sinks.mqtt'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slewguard.service.sinks import Sink

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from slewguard.service.config import ServiceConfig
    from slewguard.service.metrics import Metrics


@dataclass(frozen=True)
class SinkContext:
    """What a sink's ``build`` may use."""

    config: ServiceConfig
    metrics: Metrics  # the daemon's; sinks register their own metrics on ``metrics.registry``
    # the publish-only results connection, connected and loop-running: made once by the app
    # (service.mqtt_client.publisher_client) and kept across reloads; never the ingest connection
    results_client: mqtt.Client
    replaces: Sequence[Sink] = ()  # on a reload, the closed sinks these take over from


SinkBuilder = Callable[[SinkContext], list[Sink]]

# key -> the module whose build() makes that sink (or a build function), in build order
SINKS: dict[str, str | SinkBuilder] = {
    "alerts": "slewguard.service.sinks.alerts",
    "mqtt": "slewguard.service.sinks.mqtt",
    "influx": "slewguard.service.sinks.influx",
}


def register(key: str, build: str | SinkBuilder) -> None:
    """Add the sink ``key``, built after every sink registered before it; ``build`` is the
    path of a module with a ``build(context)`` function, or that function.

    Example:
        >>> register("mqtt", "slewguard.service.sinks.mqtt")
        Traceback (most recent call last):
        ...
        ValueError: sink key 'mqtt' is already registered (alerts, mqtt, influx)
    """
    if key in SINKS:
        raise ValueError(f"sink key {key!r} is already registered ({', '.join(SINKS)})")
    SINKS[key] = build


def builder(key: str) -> SinkBuilder:
    """The ``build`` function of sink ``key`` (importing its module on first use)."""
    entry = SINKS[key]
    return importlib.import_module(entry).build if isinstance(entry, str) else entry


def build_sinks(context: SinkContext) -> list[Sink]:
    """Every configured sink, in ``SINKS`` order: the one loop the app runs at start and on
    each reload."""
    sinks: list[Sink] = []
    for key in SINKS:
        sinks += builder(key)(context)
    return sinks
