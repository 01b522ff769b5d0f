"""The daemon's sinks come from one registry, in the order the forwarder writes to them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from slewguard.service.config import config_from_dict
from slewguard.service.metrics import Metrics
from slewguard.service.result import Result
from slewguard.service.sinks import Sink, registry
from slewguard.service.sinks.registry import SINKS, SinkContext, build_sinks, builder
from tests.service import services
from tests.service.services import wait_until

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_registry_lists_every_key_with_its_module_in_build_order():
    assert list(SINKS) == ["alerts", "mqtt", "influx"]
    for key in SINKS:
        assert builder(key).__module__ == f"slewguard.service.sinks.{key}"  # one file per key
    with pytest.raises(ValueError, match="'influx' is already registered"):
        registry.register("influx", "slewguard.service.sinks.influx")


def test_no_influx_section_never_imports_influxdb_client(tmp_path):
    """The registry imports every sink's module to build it: the InfluxDB client (13 MiB)
    still loads only when an influx sink is made."""
    code = f"""
import sys
import paho.mqtt.client as mqtt
from tests.service.test_sink_registry import _config
from slewguard.service.metrics import Metrics
from slewguard.service.sinks.registry import SinkContext, build_sinks
from pathlib import Path
sinks = build_sinks(SinkContext(_config(Path({str(tmp_path)!r})), Metrics(),
                                mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)))
print([s.name for s in sinks], "influxdb_client" in sys.modules)
for s in sinks:
    getattr(s, "close", lambda: None)()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['alerts',", "'mqtt']", "False"]


def _docs_example():
    """The sink file of docs/development.md's "Add a sink", as a module."""
    page = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = page.split("\n## Add a sink\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    module = types.ModuleType("latest_sink_example")
    exec(compile(blocks[0], "docs/development.md", "exec"), module.__dict__)  # noqa: S102
    assert "def build(context: SinkContext) -> list[Sink]:" in blocks[0]
    assert '"latest": "slewguard.service.sinks.latest",' in blocks[1]
    return module


def test_the_docs_example_sink_is_built_and_written_by_the_registry(tmp_path, monkeypatch):
    example = _docs_example()
    monkeypatch.setattr(registry, "SINKS", dict(registry.SINKS))
    registry.register("latest", example.build)
    sinks = build_sinks(SinkContext(_config(tmp_path), Metrics(), mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2)))
    try:
        assert [s.name for s in sinks] == ["alerts", "mqtt", "latest"]
        batch = [_result("s1", "healthy"), _result("s2", "outer_race")]
        sinks[2].write(batch)
        sinks[2].write(batch)  # a retried batch: same file
    finally:
        for sink in sinks:
            getattr(sink, "close", lambda: None)()
    assert json.loads((tmp_path / "latest.json").read_text()) == {
        "y/crane/slew/s1": "healthy", "y/crane/slew/s2": "outer_race"}


def _result(sensor: str, predicted: str, k: int = 0) -> Result:
    return Result("y", "crane", "slew", sensor, "m", predicted, 0.9, {predicted: 0.9}, {}, 6.0,
                  k, 1_700_000_000_000_000_000 + k, "t")


# The extra sink of the next test: a module with a build(), registered under a key, as
# docs/development.md says; it keeps what it is given so the test can look.
BUILT: list[tuple[Collect, tuple]] = []


class Collect:
    """A sink that keeps every result it is written (real: the forwarder calls it)."""

    name = "extra"

    def __init__(self) -> None:
        self.got: list[Result] = []
        self.closed = False

    def write(self, results) -> None:
        self.got.extend(results)

    def close(self) -> None:
        self.closed = True


def build(context: SinkContext) -> list[Sink]:
    sink = Collect()
    BUILT.append((sink, tuple(context.replaces)))
    return [sink]


@pytest.mark.services
def test_an_extra_registered_sink_is_built_by_the_apps_loop_at_start_and_reload(
        mosquitto, tmp_path, classifier, monkeypatch):
    from tests.service.test_app import fleet_messages, start_app

    monkeypatch.setattr(registry, "SINKS", dict(registry.SINKS))
    registry.register("extra", __name__)  # a module path, like the daemon's own sinks
    BUILT.clear()
    messages = fleet_messages(2, 5)  # windows 0..4 of two sensors, round by round
    app = start_app(tmp_path, mosquitto.port, classifier)
    try:
        assert [s.name for s in app._forwarder.sinks] == ["alerts", "mqtt", "extra"]
        services.publish(mosquitto.port, messages[:6])
        first, _ = BUILT[0]
        wait_until(lambda: len(first.got) == 6 and app.outbox.depth() == 0,
                   what="6 results in the extra sink")
        app.reload(app.config)  # what SIGHUP does: the same loop again
        (_, (old_alerts, old_mqtt, old_extra)) = BUILT[1]
        assert old_extra is first and first.closed  # closed, then handed to its successor
        assert (old_alerts.name, old_mqtt.name) == ("alerts", "mqtt")
        assert [s.name for s in app._forwarder.sinks] == ["alerts", "mqtt", "extra"]
        assert app._forwarder.sinks[2] is BUILT[1][0]
        services.publish(mosquitto.port, messages[6:])  # windows 3 and 4
        wait_until(lambda: len(BUILT[1][0].got) == 4, what="4 new results after the reload")
    finally:
        app.stop()
    assert len(BUILT) == 2
    text = app.metrics.exposition().decode()
    assert 'slewguard_sink_writes_total{outcome="ok",sink="extra"}' in text
