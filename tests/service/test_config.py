"""Configuration: the shipped example loads, env overrides, key-path errors, sensor matching."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slewguard.service.config import ConfigError, ServiceConfig, config_from_dict, load_config
from slewguard.service.sinks import registry

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "slewguard.example.yaml"
INFLUX = {"type": "influx", "url": "http://127.0.0.1:1"}


def minimal(**sections) -> dict:
    doc = {"site": "yard1",
           "sensors": [{"topic_filter": "plant/+/+/+/+/vib", "bearing": "slew-4pc-1000"}]}
    doc.update(sections)
    return doc


def errors_of(doc: dict, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        config_from_dict(doc, env=env or {})
    return exc.value.errors


def test_example_file_loads_and_documents_every_field():
    cfg = load_config(EXAMPLE, env={})
    assert cfg.site == "yard-north"
    assert cfg.sensors[0].bearing.geometry().name == "slew-4pc-1000"
    assert cfg.sensors[1].bearing.geometry().n_elements == 70
    assert cfg.sinks["influx"] is not None and cfg.sinks["influx"].url.startswith("http://")
    text = EXAMPLE.read_text()
    for section in ServiceConfig.model_fields:
        sub = getattr(cfg, section)
        models = sub.values() if isinstance(sub, dict) else sub[:1] if isinstance(sub, list) \
            else [sub]
        for model in models:
            for name in getattr(type(model), "model_fields", {}):
                assert f"{name}:" in text, f"{section}.{name} is missing from the example file"


def test_every_field_has_a_description():
    from pydantic import BaseModel

    def walk(model: type[BaseModel]) -> None:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
            for arg in [info.annotation, *getattr(info.annotation, "__args__", ())]:
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    walk(arg)

    walk(ServiceConfig)
    for key in registry.TYPES:  # the settings of each sink type, which the tree names by key
        walk(registry.config_class(key))


def test_env_overrides_file_and_keeps_secrets_out_of_repr(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(minimal(sinks={"db": INFLUX})))
    env = {"SLEWGUARD_MQTT__PASSWORD": "s3cret", "SLEWGUARD_MQTT__PORT": "8883",
           "SLEWGUARD_SINKS__DB__TOKEN": "tok", "SLEWGUARD_MQTT__TOPICS": "[a/+/vib, b/#]",
           "SLEWGUARD_SENSORS__0__RPM": "4.5", "SLEWGUARD_CWRU_DIR": "/data/cwru"}
    cfg = load_config(path, env=env)
    assert cfg.mqtt.port == 8883
    assert cfg.mqtt.password.get_secret_value() == "s3cret"
    assert cfg.sinks["db"].token.get_secret_value() == "tok"
    assert cfg.mqtt.topics == ["a/+/vib", "b/#"]
    assert cfg.sensors[0].rpm == 4.5
    assert "s3cret" not in repr(cfg) and "tok'" not in repr(cfg)


def test_errors_list_every_key_path_with_allowed_keys():
    doc = minimal(mqtt={"port": 70000}, inference={"max_batchh": 3})
    errs = errors_of(doc, env={"SLEWGUARD_MQTT__KEEPALIVE_S": "soon"})
    assert errs[0] == "mqtt.port: Input should be less than or equal to 65535 (got 70000)"
    assert errs[1].startswith("mqtt.keepalive_s: Input should be a valid integer")
    assert errs[1].endswith("(from $SLEWGUARD_MQTT__KEEPALIVE_S)")
    assert errs[2] == ("inference.max_batchh: Extra inputs are not permitted "
                       "(allowed: max_batch, max_wait_ms, queue_bytes, queue_size, signal_threads)")


def test_unknown_key_in_a_list_entry_names_its_index():
    doc = minimal()
    doc["sensors"][0]["rpm_sorce"] = "fixed"
    (err,) = errors_of(doc)
    assert err.startswith("sensors.0.rpm_sorce: Extra inputs are not permitted (allowed: bearing,")


@pytest.mark.parametrize("change,expected", [
    ({"sensors": [{"topic_filter": "a/#", "bearing": "slew-4pc-1000", "rpm_source": "fixed"}]},
     "sensors.0: rpm_source 'fixed' needs rpm"),
    ({"sensors": [{"bearing": "slew-4pc-1000"}]}, "sensors.0: give topic_filter, sensor_id"),
    ({"sensors": [{"topic_filter": "a/#", "bearing": "nope"}]},
     "sensors.0.bearing: unknown bearing preset 'nope'"),
    ({"sensors": [{"topic_filter": "a/#", "bearing": {"pitch_diameter_mm": 100}}]},
     "sensors.0.bearing: an inline bearing needs"),
    ({"sensors": [{"topic_filter": "a/#/b", "bearing": "cwru-6205"}]},
     "sensors.0: topic_filter 'a/#/b' is not a valid MQTT topic filter"),
    ({"mqtt": {"topics": ["plant/#"]}}, "mqtt: filter 'plant/#' also matches the daemon's own"),
    ({"mqtt": {"shared_group": "a/b"}}, "mqtt: shared_group='a/b'"),
    ({"mqtt": {"reconnect_min_s": 10, "reconnect_max_s": 1}}, "mqtt: reconnect_min_s=10.0"),
    ({"mqtt": {"tls": {"cert_file": "/etc/hostname"}}}, "mqtt.tls: cert_file and key_file go"),
    ({"mqtt": {"tls": {"ca_file": "/nonexistent/ca.crt"}}}, "mqtt.tls: ca_file='/nonexistent"),
    ({"mqtt": {"protocol": 4}}, "mqtt.protocol: Input should be '5' or '3.1.1' (got '4')"),
    ({"inference": {"max_batch": 64, "queue_size": 8}}, "inference: queue_size=8 must be >="),
    ({"sinks": {"db": {**INFLUX, "url": "localhost:8086"}}}, "sinks.db: url='localhost:8086'"),
    ({"sinks": {"db": {"url": "http://h:1"}}}, "sinks.db.type: Field required"),
    ({"sinks": {"db": {"type": "kafka"}}}, "sinks.db.type: unknown sink type 'kafka' (known: "
     "influx"),
    ({"sinks": {"db": {**INFLUX, "bukket": "b"}}}, "sinks.db.bukket: Extra inputs are not "
     "permitted (allowed: batch_size, bucket, "),
    ({"sinks": {"db": {**INFLUX, "batch_size": 0}}}, "sinks.db.batch_size: Input should be "
     "greater than or equal to 1 (got 0)"),
    ({"sinks": {"Db": INFLUX}}, "sinks.Db: name 'Db': use lower-case letters, digits and single "
     "underscores"),
    ({"sinks": {"db__x": INFLUX}}, "sinks.db__x: name 'db__x': use lower-case"),
    ({"sinks": {"mqtt": INFLUX}}, "sinks.mqtt: name 'mqtt': the built-in sink 'mqtt' has this "
     "name: choose another"),
    ({"sinks": {"db": "http://h:1"}}, "sinks.db: a sink's settings are a mapping with a type, "
     "got str"),
    ({"influx": {"url": "http://h:1"}, "sinks": {"influx": INFLUX}}, "influx: the old section "
     "and sinks.influx both configure the sink 'influx': keep sinks.influx and delete influx"),
    ({"site": "my site"}, "site: String should match pattern"),
    ({"model": {"path": "/models/x", "shipped": "fast"}}, "model: path='/models/x' and "
     "shipped='fast' both name a model"),
    ({"model": {"shipped": "tiny"}}, "model.shipped: Input should be 'default' or 'fast'"),
    ({"model": {"runtime": "tflite"}}, "model.runtime: not a model runtime: pick one of onnx, "
     "torch (got 'tflite')"),
    ({"model": {"runtime": "onnx", "dtype": "bfloat16"}}, "model: runtime='onnx' runs float32 "
     "on the CPU, not dtype='bfloat16' on device='cpu': set model.dtype float32"),
])
def test_cross_field_and_value_errors(change, expected):
    errs = errors_of(minimal(**change))
    assert any(e.startswith(expected) for e in errs), errs


def test_unquoted_protocol_version_is_read_as_text():
    assert config_from_dict(minimal(mqtt={"protocol": 5}), env={}).mqtt.protocol == "5"


def test_python_values_are_accepted_and_the_input_is_not_modified(tmp_path):
    doc = minimal(outbox={"path": tmp_path / "o.db"})
    cfg = config_from_dict(doc, env={"SLEWGUARD_OUTBOX__MAX_BYTES": "2000000"})
    assert cfg.outbox.path == tmp_path / "o.db" and cfg.outbox.max_bytes == 2_000_000
    assert doc["outbox"] == {"path": tmp_path / "o.db"}


def test_secrets_are_not_echoed_in_errors():
    errs = errors_of(minimal(mqtt={"password": ["hunter2"]}))
    assert errs and not any("hunter2" in e for e in errs)


def test_file_problems_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\n  - line 2"):
        load_config(bad, env={})
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad, env={})


def test_sensor_for_uses_topic_filters_and_sensor_ids_first_match_wins():
    cfg = config_from_dict(minimal(sensors=[
        {"sensor_id": "special", "topic_filter": "plant/y/#", "bearing": "cwru-6205"},
        {"topic_filter": "plant/y/crane1/+/+/vib", "bearing": "slew-xr-1000",
         "rpm_source": "fixed", "rpm": 2.0},
        {"topic_filter": "plant/+/+/+/+/vib", "bearing": "slew-4pc-1000"},
    ]), env={})
    assert cfg.sensor_for("plant/y/crane1/slew/s9/vib", "special").bearing.preset == "cwru-6205"
    assert cfg.sensor_for("plant/y/crane1/slew/s9/vib", "other").bearing.preset == "slew-xr-1000"
    assert cfg.sensor_for("plant/z/crane7/slew/s1/vib").bearing.preset == "slew-4pc-1000"
    assert cfg.sensor_for("plant/z/crane7/slew/s1/temp") is None
    assert cfg.sensor_for("other/y/crane1/slew/s1/vib") is None


@pytest.mark.parametrize("password", ["[Pw-7x", "{Pw: 7}", "null", "~", " [a, b] ", "'quoted'"])
def test_env_secrets_are_taken_verbatim(password):
    env = {"SLEWGUARD_MQTT__PASSWORD": password, "SLEWGUARD_MQTT__USERNAME": "[user",
           "SLEWGUARD_SINKS__DB__TOKEN": password, "SLEWGUARD_SINKS__DB__URL": "http://h:1/{x}"}
    cfg = config_from_dict(minimal(sinks={"db": INFLUX}), env=env)
    assert cfg.mqtt.password.get_secret_value() == password
    assert cfg.sinks["db"].token.get_secret_value() == password
    assert cfg.mqtt.username == "[user" and cfg.sinks["db"].url == "http://h:1/{x}"


def test_env_text_fields_and_paths_are_verbatim(tmp_path):
    env = {"SLEWGUARD_OUTBOX__PATH": str(tmp_path / "[o].db"), "SLEWGUARD_SITE": "null",
           "SLEWGUARD_ALERTS__WEBHOOKS__0__HEADERS__AUTHORIZATION": "{Bearer x}"}
    hook = {"name": "t", "url": "http://127.0.0.1:1/h"}
    cfg = config_from_dict(minimal(alerts={"webhooks": [hook]}), env=env)
    assert cfg.outbox.path == tmp_path / "[o].db" and cfg.site == "null"
    assert cfg.alerts.webhooks[0].headers == {"authorization": "{Bearer x}"}


def test_env_structured_fields_still_parse_lists_mappings_and_null():
    env = {"SLEWGUARD_MQTT__TOPICS": '["a/+/vib", "b/#"]',
           "SLEWGUARD_ALERTS__ENTER_K": "{outer_race: 4}",
           "SLEWGUARD_ALERTS__ESCALATE_ENVELOPE_DB": "[10, 20]",
           "SLEWGUARD_SENSORS__0__ORDER_LINES": "[123]",
           "SLEWGUARD_MODEL__TORCH_THREADS": "null", "SLEWGUARD_SINKS__DB": "~"}
    cfg = config_from_dict(minimal(sinks={"db": INFLUX}), env=env)
    assert cfg.mqtt.topics == ["a/+/vib", "b/#"]
    assert cfg.alerts.enter_k == {"outer_race": 4}
    assert cfg.alerts.escalate_envelope_db == [10.0, 20.0]
    assert cfg.sensors[0].order_lines == [123.0]
    assert cfg.model.torch_threads is None and cfg.sinks == {"db": None}


def test_env_parse_error_names_the_variable_but_not_the_value():
    secret = "Bearer-s3cret"
    errs = errors_of(minimal(), env={"SLEWGUARD_MQTT__TOPICS": f"[a/+/vib, {{{secret}"})
    assert len(errs) == 1 and errs[0].startswith("SLEWGUARD_MQTT__TOPICS: not valid YAML/JSON")
    assert secret not in errs[0]
    hook = {"name": "t", "url": "http://127.0.0.1:1/h"}
    errs = errors_of(minimal(alerts={"webhooks": [hook]}),
                     env={"SLEWGUARD_ALERTS__WEBHOOKS__0__HEADERS": secret})
    assert errs[0].startswith("alerts.webhooks.0.headers: Input should be a valid dictionary")
    assert not any(secret in e for e in errs)


def test_check_config_with_a_bracket_password_prints_no_traceback_or_secret(tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(minimal(mqtt={"topics": ["plant/+/+/+/+/vib"]})))
    env = {**os.environ, "SLEWGUARD_MQTT__PASSWORD": "[Pw-7x"}
    ok = subprocess.run([sys.executable, "-m", "slewguard.cli", "check-config", str(path)],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "Pw-7x" not in ok.stdout + ok.stderr
    env["SLEWGUARD_MQTT__TOPICS"] = "[Pw-7x"
    bad = subprocess.run([sys.executable, "-m", "slewguard.cli", "check-config", str(path)],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "SLEWGUARD_MQTT__TOPICS: not valid" in bad.stderr
    assert "Traceback" not in bad.stderr and "Pw-7x" not in bad.stderr


def test_the_old_influx_section_and_variables_still_configure_the_same_sink(caplog):
    """A config written before ``sinks`` (section ``influx``, SLEWGUARD_INFLUX__*) loads as the
    sink named influx, and the log says how to write it today."""
    new = config_from_dict(minimal(sinks={"influx": {**INFLUX, "bucket": "b"}}),
                           env={"SLEWGUARD_SINKS__INFLUX__TOKEN": "[tok"})
    assert not caplog.records
    old = config_from_dict(minimal(influx={"url": "http://127.0.0.1:1", "bucket": "b"}),
                           env={"SLEWGUARD_INFLUX__TOKEN": "[tok"})
    assert old == new and old.sinks["influx"].token.get_secret_value() == "[tok"
    notes = [r.getMessage() for r in caplog.records]
    assert notes == ["config: the section 'influx' is the old layout, read as sinks.influx with "
                     "type: influx; move it there (docs/configuration.md)",
                     "config: SLEWGUARD_INFLUX__TOKEN is the old name of "
                     "SLEWGUARD_SINKS__INFLUX__TOKEN; rename it"]
    assert all(r.levelname == "WARNING" and "[tok" not in r.getMessage() for r in caplog.records)
    # an old variable alone, with the new layout in the file, reaches the same entry
    mixed = config_from_dict(minimal(sinks={"influx": {**INFLUX, "bucket": "b"}}),
                             env={"SLEWGUARD_INFLUX__TOKEN": "[tok"})
    assert mixed == new
    off = config_from_dict(minimal(influx=None), env={})
    assert off.sinks == {"influx": None}


def test_two_sinks_of_one_type_keep_their_names_and_order():
    cfg = config_from_dict(minimal(sinks={"local": {**INFLUX, "bucket": "a"},
                                          "cloud": {**INFLUX, "bucket": "b", "token": "t"}}),
                           env={"SLEWGUARD_SINKS__CLOUD__BATCH_SIZE": "50"})
    assert list(cfg.sinks) == ["local", "cloud"]
    assert [s.bucket for s in cfg.sinks.values()] == ["a", "b"]
    assert cfg.sinks["cloud"].batch_size == 50 and cfg.sinks["local"].batch_size == 500


def test_a_sink_secret_of_the_wrong_type_is_not_echoed():
    errors = errors_of(minimal(sinks={"db": {**INFLUX, "token": ["s3cr3t-tok"]}}))
    assert errors[0].startswith("sinks.db.token: ") and "s3cr3t" not in " ".join(errors)
