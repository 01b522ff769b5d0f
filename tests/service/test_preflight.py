"""Start-up failures a user meets every day: one line naming the cause, the key and the fix, exit 2.

Each case runs the real ``slewguard`` process (serve, check-config, simulate) against a real
socket, directory or broker; ``check-config`` must refuse what ``serve`` refuses.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import yaml

from slewguard.models.shipped import shipped_model_dir
from tests.service import services
from tests.service.vm import victoria_metrics  # noqa: F401 - pytest fixture

CLI = [sys.executable, "-m", "slewguard.cli"]


def write_config(tmp_path, name="c.yaml", **sections) -> str:
    data = {"site": "yard1",
            "mqtt": {"port": services.free_port(), "client_id": "preflight"},
            "sensors": [{"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205"}],
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "http": {"port": services.free_port()}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def run(*args, prefix=(), timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *CLI, *args], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line(done: subprocess.CompletedProcess, *words: str) -> str:
    """The process exited 2 with one error line on stderr that holds every word."""
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_serve_with_the_http_port_taken_names_http_port_before_loading_the_model(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = write_config(tmp_path, http={"port": port})
        done = run("serve", "-c", path)
        line = assert_one_line(done, "http.port", f"127.0.0.1:{port}", "already in use",
                               "free port")
        assert "runs on the" not in done.stderr  # refused before the model loaded
        checked = run("check-config", path)
    assert line.startswith("slewguard serve: error: http.port:")
    assert checked.returncode == 0, checked.stderr  # the port is only a warning there
    assert f"warning: http.port: 127.0.0.1:{port} is already in use" in checked.stderr
    assert "ok: site yard1" in checked.stdout


def test_outbox_under_a_file_is_refused_by_serve_and_check_config(tmp_path):
    (tmp_path / "plain").write_text("not a directory")
    path = write_config(tmp_path, outbox={"path": str(tmp_path / "plain" / "o.sqlite3")})
    words = ("outbox.path", f"{tmp_path / 'plain'}'", "is a file, not a directory",
             "set outbox.path")
    served = assert_one_line(run("serve", "-c", path), *words)
    checked = assert_one_line(run("check-config", path), *words)
    assert served.split("outbox.path")[1] == checked.split("outbox.path")[1]
    assert not (tmp_path / "outbox-alerts.sqlite3").exists()  # nothing started


@pytest.mark.parametrize("key", ["outbox.path", "alerts.queue_path"])
def test_a_file_that_is_not_sqlite_is_refused_by_serve_and_check_config(tmp_path, key):
    # e.g. the path of an exported CSV given by mistake: serve died on "file is not a database"
    # after loading the model, check-config said ok
    csv = tmp_path / "readings.csv"
    csv.write_text("time,value\n1,2\n")
    section, field = key.split(".")
    path = write_config(tmp_path, **{section: {field: str(csv)}})
    words = (key, f"'{csv}' is not an SQLite database", "b'time,val'", "move that file away")
    assert_one_line(run("check-config", path), *words)
    assert_one_line(run("serve", "-c", path), *words)
    assert csv.read_text() == "time,value\n1,2\n"  # left as it was


def test_an_existing_outbox_and_alert_queue_pass_check_config(tmp_path):
    import sqlite3

    for name in ("outbox.sqlite3", "outbox-alerts.sqlite3"):
        with sqlite3.connect(tmp_path / name) as db:
            db.execute("create table t (x)")
    checked = run("check-config", write_config(tmp_path))
    assert checked.returncode == 0, checked.stderr
    assert "ok: site yard1" in checked.stdout


def _without_root_override() -> list[str]:
    """Run the child without root's right to write anywhere (so a mode-0500 dir binds it)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def test_outbox_in_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        path = write_config(tmp_path, outbox={"path": str(locked / "o.sqlite3")})
        prefix = _without_root_override()
        words = ("outbox.path", f"directory '{locked}' is not writable", "fix its owner")
        assert_one_line(run("serve", "-c", path, prefix=prefix), *words)
        assert_one_line(run("check-config", path, prefix=prefix), *words)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_simulate_publish_to_a_broker_that_is_down(tmp_path):
    port = services.free_port()  # nothing listens there
    done = run("simulate", "--publish", "--broker", f"127.0.0.1:{port}", "--sensors", "1",
               "--count", "1")
    assert_one_line(done, f"--broker 127.0.0.1:{port}", "connection refused", "start the broker")


def test_a_missing_model_path_is_refused_by_check_config_as_by_serve(tmp_path):
    missing = tmp_path / "no-such-model"
    path = write_config(tmp_path, model={"path": str(missing)})
    words = ("model.path", f"'{missing}' does not exist", "slewguard train")
    assert_one_line(run("check-config", path), *words)
    assert_one_line(run("serve", "--config", path), *words)


def test_check_config_reads_the_model_card_and_its_files(tmp_path):
    old = tmp_path / "old-model"
    old.mkdir()
    card = json.loads((shipped_model_dir("default") / "card.json").read_text())
    (old / "card.json").write_text(json.dumps({**card, "template_version": "t0"}))
    old_config = write_config(tmp_path, "old.yaml", model={"path": str(old)})
    assert_one_line(run("check-config", old_config), "model.path", "textify template 't0'",
                    "retrain it")
    bare = tmp_path / "bare-model"
    bare.mkdir()
    (bare / "card.json").write_text(json.dumps(card))
    bare_config = write_config(tmp_path, "bare.yaml", model={"path": str(bare)})
    assert_one_line(run("check-config", bare_config), "model.path",
                    "has a card but no config.json, model.safetensors", "save the model")
    shipped = run("check-config", write_config(tmp_path, "ok.yaml"))
    assert shipped.returncode == 0 and "model shipped default" in shipped.stdout


def test_a_webhook_template_that_does_not_compile_is_refused(tmp_path):
    hook = {"name": "jira", "url": "http://127.0.0.1:1/t", "format": "template",
            "template": '{"key": {{ event.dedup_key | tojson }\n}'}
    path = write_config(tmp_path, alerts={"webhooks": [hook]})
    words = ("alerts.webhooks.0.template (webhook 'jira')", "line 1", "fix the Jinja2 syntax")
    assert_one_line(run("check-config", path), *words)
    assert_one_line(run("serve", "-c", path), *words)


def test_an_unknown_bearing_preset_is_one_line_in_every_command(tmp_path):
    path = write_config(tmp_path)
    data = yaml.safe_load((tmp_path / "c.yaml").read_text())
    data["sensors"][0]["bearing"] = "slew-9000"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    words = ("sensors.0.bearing: unknown bearing preset 'slew-9000'", "choose one of",
             "slew-4pc-1000")
    for command in (["check-config", path], ["serve", "-c", path],
                    ["baseline", "show", "-c", path]):
        assert_one_line(run(*command), *words)


def test_check_config_takes_the_file_positionally_or_with_c(tmp_path):
    path = write_config(tmp_path)
    for args in ([path], ["-c", path], ["--config", path], [path, "-c", path]):
        done = run("check-config", *args)
        assert done.returncode == 0 and "ok: site yard1" in done.stdout, (args, done.stderr)
    other = write_config(tmp_path, "other.yaml")
    assert_one_line(run("check-config", path, "-c", other), "two config files given")
    assert_one_line(run("check-config"), "no config file", "-c FILE")


def test_serve_and_baseline_name_the_config_file_the_same_way(tmp_path):
    path = write_config(tmp_path)
    for args in (["baseline", "show", path], ["baseline", "show", "-c", path]):
        done = run(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert "no bearing has sent a window yet" in done.stdout, done.stdout
    data = yaml.safe_load((tmp_path / "c.yaml").read_text())
    data["sensors"][0]["bearing"] = "slew-9000"  # refused at start, before any connect
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    for args in (["serve", path], ["serve", "--config", path], ["baseline", "show", path]):
        assert_one_line(run(*args), "unknown bearing preset 'slew-9000'")
    for command in ("serve", "baseline"):
        extra = ["show"] if command == "baseline" else []
        assert_one_line(run(command, *extra), "no config file", "-c FILE")
        assert_one_line(run(command, *extra, path, "-c", other := write_config(
            tmp_path, "other.yaml")), "two config files given", other)


def test_check_config_connect_tries_the_broker_and_the_database(tmp_path, mosquitto,
                                                                victoria_metrics):  # noqa: F811
    up = write_config(tmp_path, "up.yaml", mqtt={"port": mosquitto.port},
                      sinks={"tsdb": {"type": "influx", "url": victoria_metrics.url}})
    done = run("check-config", up, "--connect")
    assert done.returncode == 0, done.stderr
    assert "(broker and database answered)" in done.stdout
    assert run("check-config", up).returncode == 0  # without --connect nothing is tried
    port = services.free_port()
    broker_down = write_config(tmp_path, "b.yaml", mqtt={"port": port})
    assert_one_line(run("check-config", broker_down, "--connect"), "mqtt.host/mqtt.port",
             f"nothing listens on 127.0.0.1:{port}", "start the server")
    assert run("check-config", broker_down).returncode == 0
    db_down = write_config(tmp_path, "d.yaml", mqtt={"port": mosquitto.port},
                           sinks={"tsdb": {"type": "influx",
                                           "url": f"http://admin:hunter2@127.0.0.1:{port}"}})
    line = assert_one_line(run("check-config", db_down, "--connect"), "sinks.tsdb.url",
                    "connection refused")
    assert "hunter2" not in line


def test_check_config_connect_names_the_login_when_the_broker_refuses_it(tmp_path,
                                                                         mosquitto_factory):
    pw = services.password_file(tmp_path / "pw", "sensor", "right")
    broker = mosquitto_factory(extra=["allow_anonymous false", f"password_file {pw}"])
    path = write_config(tmp_path, mqtt={"port": broker.port, "username": "sensor",
                                        "password": "wrong-pw-1"})
    line = assert_one_line(run("check-config", path, "--connect"), "mqtt.username/mqtt.password",
                    "refused")
    assert "wrong-pw-1" not in line
    ok = subprocess.run([*CLI, "check-config", path, "--connect"], capture_output=True,
                        text=True, env={**os.environ, "SLEWGUARD_MQTT__PASSWORD": "right"})
    assert ok.returncode == 0, ok.stderr


def test_a_t3_model_without_the_evidence_stage_is_refused_by_check_config_and_serve(tmp_path):
    path = write_config(tmp_path, evidence={"enabled": False})  # shipped default: template t3
    words = ("evidence.enabled: false", "textify template 't3'", "set evidence.enabled: true")
    assert_one_line(run("check-config", path), *words)
    assert_one_line(run("serve", "--config", path), *words)


def test_order_lines_without_scipy_is_refused_by_check_config_and_serve(tmp_path):
    from tests.models.no_torch import blocked_env

    sensor = {"topic_filter": "plant/+/+/+/+/vib", "bearing": "cwru-6205", "order_lines": [87]}
    path = write_config(tmp_path)
    data = yaml.safe_load((tmp_path / "c.yaml").read_text())
    data["sensors"] = [sensor]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    env = blocked_env(tmp_path, ("torch", "transformers", "scipy"))
    words = ("sensors[0].order_lines: [87.0] needs scipy",
             "pip install 'slewguard[signal]', or remove order_lines")
    for command in (["check-config", path], ["serve", "--config", path]):
        done = subprocess.run([*CLI, *command], capture_output=True, text=True, timeout=120,
                              env=env)
        assert_one_line(done, *words)
    assert run("check-config", path).returncode == 0  # with scipy installed: fine
