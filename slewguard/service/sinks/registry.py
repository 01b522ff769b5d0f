"""The sinks the daemon builds, in the order the forwarder writes to them.

Two built-in sinks are always built first, each from its own section: ``alerts``
(``sinks/alerts.py``, section ``alerts``: first, so an alert never waits on a database outage)
and ``mqtt`` (``sinks/mqtt.py``, section ``mqtt``: results on the broker). After them comes one
sink per entry of the config's ``sinks`` mapping, in the file's order: a name of the operator's
choosing (the sink's metric label and its environment key, ``SLEWGUARD_SINKS__<NAME>__<KEY>``)
mapped to settings tagged by ``type``. A type is a key of ``TYPES``: the path of a module in
this package holding the type's settings class ``Config`` (a ``SinkConfig``) and
``build(context, name, config) -> list[Sink]``. ``influx`` (``sinks/influx.py``) is the one type
shipped; ``register`` adds another.

The app builds every sink in one call (``build_sinks``), at start and on each reload (SIGHUP).
A module is imported only when its type is configured, so ``TYPES`` costs nothing to import.

Example:
    >>> list(BUILT_IN), list(TYPES)
    (['alerts', 'mqtt'], ['influx'])
    >>> config_class("influx").__name__
    'InfluxConfig'
    >>> config_class("kafka")
    Traceback (most recent call last):
    ...
    ValueError: unknown sink type 'kafka' (known: influx)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from slewguard.service.sinks import Sink

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from slewguard.service.config import ServiceConfig
    from slewguard.service.config.sinks import SinkConfig
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


# the sinks every daemon builds, from their own sections, first and in this order
BUILT_IN: dict[str, str] = {
    "alerts": "slewguard.service.sinks.alerts",
    "mqtt": "slewguard.service.sinks.mqtt",
}
# type key of a ``sinks`` entry -> the module with its ``Config`` and ``build(context, name,
# config)`` (or that module itself, for a type registered from outside the package)
TYPES: dict[str, str | ModuleType] = {
    "influx": "slewguard.service.sinks.influx",
}


def register(key: str, module: str | ModuleType) -> None:
    """Add the sink type ``key``: ``module`` (its import path, or the module) holds the type's
    settings class ``Config`` and ``build(context, name, config)``. Register before the config
    is loaded: a ``sinks`` entry's type is looked up when the config is validated.

    Example:
        >>> register("influx", "slewguard.service.sinks.influx")
        Traceback (most recent call last):
        ...
        ValueError: sink type 'influx' is already registered (influx)
    """
    if key in TYPES or key in BUILT_IN:
        raise ValueError(f"sink type {key!r} is already registered ({', '.join(TYPES)})")
    TYPES[key] = module


def sink_type(key: str) -> ModuleType:
    """The module of sink type ``key`` (imported on first use); ValueError for an unknown key."""
    if key not in TYPES:
        raise ValueError(f"unknown sink type {key!r} (known: {', '.join(TYPES)})")
    entry = TYPES[key]
    return importlib.import_module(entry) if isinstance(entry, str) else entry


def config_class(key: str) -> type[SinkConfig]:
    """The settings class of sink type ``key``."""
    return sink_type(key).Config


def build_sinks(context: SinkContext) -> list[Sink]:
    """The built-in sinks, then one per ``sinks`` entry that is not null: the one call the app
    makes at start and on each reload."""
    sinks: list[Sink] = []
    for path in BUILT_IN.values():
        sinks += importlib.import_module(path).build(context)
    for name, settings in context.config.sinks.items():
        if settings is not None:
            sinks += sink_type(settings.type).build(context, name, settings)
    return sinks
