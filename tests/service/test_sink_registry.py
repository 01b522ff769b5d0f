"""The daemon's sinks come from one registry, in the order the forwarder writes to them."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from slewguard.service.config import config_from_dict
from slewguard.service.metrics import Metrics
from slewguard.service.sinks.registry import SINKS, SinkContext, build_sinks


def _config(tmp_path, **sections):
    return config_from_dict({"site": "y", "sensors": [{"sensor_id": "s", "bearing": "cwru-6205"}],
                             "outbox": {"path": str(tmp_path / "outbox.sqlite3")}, **sections},
                            env={})


def test_every_configured_sink_in_registry_order(tmp_path):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    config = _config(tmp_path, influx={"url": "http://127.0.0.1:1", "bucket": "b",
                                       "org": "o", "token": "t"})
    sinks = build_sinks(SinkContext(config, Metrics(), client))
    try:
        assert [s.name for s in sinks] == ["alerts", "mqtt", "influx"] == list(SINKS)
        assert sinks[1].client is client  # results go out on the results connection
    finally:
        for sink in sinks:
            getattr(sink, "close", lambda: None)()


def test_a_section_that_is_off_builds_no_sink(tmp_path):
    config = _config(tmp_path, alerts={"enabled": False})  # and no influx section
    sinks = build_sinks(SinkContext(config, Metrics(), mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2)))
    assert [s.name for s in sinks] == ["mqtt"]
