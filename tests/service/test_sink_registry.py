"""The daemon's sinks come from one registry, in the order the forwarder writes to them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Literal

import paho.mqtt.client as mqtt
import pytest
import yaml

from slewguard.service.config import ConfigError, config_from_dict
from slewguard.service.config.sinks import SinkConfig
from slewguard.service.metrics import Metrics
from slewguard.service.result import Result
from slewguard.service.sinks import Sink, registry
from slewguard.service.sinks.registry import (
    BUILT_IN,
    TYPES,
    SinkContext,
    build_sinks,
    config_class,
    sink_type,
)
from tests.service import services
from tests.service.services import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path, **sections):
    return config_from_dict({"site": "y", "sensors": [{"sensor_id": "s", "bearing": "cwru-6205"}],
                             "outbox": {"path": str(tmp_path / "outbox.sqlite3")}, **sections},
                            env={})


INFLUX = {"type": "influx", "url": "http://127.0.0.1:1", "bucket": "b", "org": "o", "token": "t"}


def test_built_in_sinks_first_then_each_sinks_entry_in_file_order(tmp_path):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    config = _config(tmp_path, sinks={"local": INFLUX, "off": None,
                                      "archive": {**INFLUX, "bucket": "a"}})
    sinks = build_sinks(SinkContext(config, Metrics(), client))
    try:
        assert [s.name for s in sinks] == ["alerts", "mqtt", "local", "archive"]
        assert sinks[1].client is client  # results go out on the results connection
        assert [s.config.bucket for s in sinks[2:]] == ["b", "a"]
    finally:
        for sink in sinks:
            getattr(sink, "close", lambda: None)()


def test_a_section_that_is_off_builds_no_sink(tmp_path):
    config = _config(tmp_path, alerts={"enabled": False})  # and no sinks entry
    sinks = build_sinks(SinkContext(config, Metrics(), mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2)))
    assert [s.name for s in sinks] == ["mqtt"]


def test_the_registry_lists_every_sink_with_its_module():
    assert list(BUILT_IN) == ["alerts", "mqtt"] and list(TYPES) == ["influx"]
    for key, path in {**BUILT_IN, **TYPES}.items():
        assert path == f"slewguard.service.sinks.{key}"  # one file per sink
    assert sink_type("influx").Config is config_class("influx")
    with pytest.raises(ValueError, match="'influx' is already registered"):
        registry.register("influx", "slewguard.service.sinks.influx")
    with pytest.raises(ValueError, match="'mqtt' is already registered"):
        registry.register("mqtt", "slewguard.service.sinks.mqtt")


def test_no_influx_entry_never_imports_influxdb_client(tmp_path):
    """The registry imports the modules of the sinks it builds: the InfluxDB client (13 MiB)
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


def _docs_example(monkeypatch):
    """The sink file, the registry entry and the config of docs/development.md's "Add a sink"."""
    page = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = page.split("\n## Add a sink\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    config = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    module = types.ModuleType("latest_sink_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # pydantic resolves annotations
    exec(compile(code[0], "docs/development.md", "exec"), module.__dict__)  # noqa: S102
    assert "def build(context: SinkContext, name: str, config: Config) -> list[Sink]:" in code[0]
    assert '"latest": "slewguard.service.sinks.latest",' in code[1]
    return module, yaml.safe_load(config[0])


def test_the_docs_example_sink_type_is_configured_built_and_written(tmp_path, monkeypatch):
    example, section = _docs_example(monkeypatch)
    monkeypatch.setattr(registry, "TYPES", dict(registry.TYPES))
    registry.register("latest", example)
    entry = section["sinks"]["latest"]
    assert entry["type"] == "latest"
    path = tmp_path / "latest.json"
    config = _config(tmp_path, sinks={"latest": {**entry, "path": str(path)}})
    sinks = build_sinks(SinkContext(config, Metrics(), mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2)))
    try:
        assert [s.name for s in sinks] == ["alerts", "mqtt", "latest"]
        batch = [_result("s1", "healthy"), _result("s2", "outer_race")]
        sinks[2].write(batch)
        sinks[2].write(batch)  # a retried batch: same file
    finally:
        for sink in sinks:
            getattr(sink, "close", lambda: None)()
    assert json.loads(path.read_text()) == {
        "y/crane/slew/s1": "healthy", "y/crane/slew/s2": "outer_race"}
    with pytest.raises(ConfigError, match=r"sinks.latest.pth: Extra inputs are not permitted "
                                          r"\(allowed: path, type\)"):
        _config(tmp_path, sinks={"latest": {"type": "latest", "pth": "x"}})


def _result(sensor: str, predicted: str, k: int = 0) -> Result:
    return Result("y", "crane", "slew", sensor, "m", predicted, 0.9, {predicted: 0.9}, {}, 6.0,
                  k, 1_700_000_000_000_000_000 + k, "t")


# The extra sink of the next test: a module with a build(), registered under a key, as
# docs/development.md says; it keeps what it is given so the test can look.
BUILT: list[tuple[Collect, tuple]] = []


class Config(SinkConfig):
    """A ``sinks`` entry with ``type: extra``."""

    type: Literal["extra"] = "extra"


class Collect:
    """A sink that keeps every result it is written (real: the forwarder calls it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[Result] = []
        self.closed = False

    def write(self, results) -> None:
        self.got.extend(results)

    def close(self) -> None:
        self.closed = True


def build(context: SinkContext, name: str, config: Config) -> list[Sink]:
    sink = Collect(name)
    BUILT.append((sink, tuple(context.replaces)))
    return [sink]


@pytest.mark.services
def test_a_registered_sink_type_is_built_by_the_app_at_start_and_reload(
        mosquitto, tmp_path, classifier, monkeypatch):
    from tests.service.test_app import fleet_messages, start_app

    monkeypatch.setattr(registry, "TYPES", dict(registry.TYPES))
    registry.register("extra", __name__)  # a module path, like the daemon's own sinks
    BUILT.clear()
    messages = fleet_messages(2, 5)  # windows 0..4 of two sensors, round by round
    app = start_app(tmp_path, mosquitto.port, classifier, sinks={"extra": {"type": "extra"}})
    try:
        assert [s.name for s in app._forwarder.sinks] == ["alerts", "mqtt", "extra"]
        services.publish(mosquitto.port, messages[:6])
        first, _ = BUILT[0]
        wait_until(lambda: len(first.got) == 6 and app.outbox.depth() == 0,
                   what="6 results in the extra sink")
        app.reload(app.config)  # what SIGHUP does: the same build again
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
