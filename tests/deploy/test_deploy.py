"""Static checks of everything under deploy/ and docker-compose.yml, with the real tools."""

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def _run(*cmd: str) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        pytest.fail(f"{cmd[0]} is not installed: run scripts/test.sh, which installs it")
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_promtool_check_rules():
    out = _run("promtool", "check", "rules", "deploy/prometheus/rules/slewguard.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 rules found" in out.stdout


def test_promtool_unit_tests_cover_every_rule():
    out = _run("promtool", "test", "rules", "deploy/prometheus/tests/slewguard.test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    rules = yaml.safe_load((DEPLOY / "prometheus/rules/slewguard.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((DEPLOY / "prometheus/tests/slewguard.test.yml").read_text())
    tested = {a["alertname"] for t in tests["tests"] for a in t.get("alert_rule_test", [])
              if a.get("exp_alerts")}
    assert names == tested, f"rules without a firing unit test: {names - tested}"


def test_amtool_check_config():
    out = _run("amtool", "check-config", "deploy/alertmanager/alertmanager.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_alertmanager_inhibits_bearing_fault_while_sensor_stale():
    cfg = yaml.safe_load((DEPLOY / "alertmanager/alertmanager.yml").read_text())
    pairs = {(r["source_matchers"][0], r["target_matchers"][0]) for r in cfg["inhibit_rules"]}
    assert ('alertname="SlewguardSensorStale"', 'alertname="SlewguardBearingFault"') in pairs


def test_promtool_check_prometheus_config(tmp_path):
    # The compose config points at container paths; check a copy with the rules path made local.
    cfg = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    cfg["rule_files"] = [str(DEPLOY / "prometheus/rules/*.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    out = _run("promtool", "check", "config", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


def _datasource_uids() -> set[str]:
    uids = set()
    for f in (DEPLOY / "grafana/provisioning/datasources").glob("*.yaml"):
        uids |= {d["uid"] for d in yaml.safe_load(f.read_text())["datasources"]}
    return uids


def _walk_datasources(node):
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]["uid"]
        for v in node.values():
            yield from _walk_datasources(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_datasources(v)


def test_three_dashboards_with_fixed_uids():
    uids = {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    assert uids == {"slewguard-fleet", "slewguard-bearing", "slewguard-service"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_references_provisioned_datasources(path):
    board = json.loads(path.read_text())
    used = set(_walk_datasources(board))
    assert used and used <= _datasource_uids()
    names = {v["name"] for v in board["templating"]["list"]}
    assert {"site", "asset"} <= names
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_dashboard_provider_path_is_where_compose_mounts_dashboards():
    provider_file = DEPLOY / "grafana/provisioning/dashboards/slewguard.yaml"
    provider = yaml.safe_load(provider_file.read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = [v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]]
    assert path in mounts


def test_compose_parses_and_references_existing_files():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"mosquitto", "influxdb", "prometheus", "alertmanager", "grafana", "slewguard",
            "simulator"} <= set(services)
    assert services["simulator"]["profiles"] == ["demo"]
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert "influxdb:2.7" in services["influxdb"]["image"]


def test_compose_daemon_config_is_valid():
    from slewguard.service.config import load_config

    config = load_config(DEPLOY / "slewguard.compose.yaml")
    assert config.mqtt.host == "mosquitto"
    assert config.sinks["influx"] is not None
    assert config.sinks["influx"].url == "http://influxdb:8086"


def torch_pin() -> str:
    """The torch requirement of pyproject.toml's training extra, e.g. ``torch==2.13.0``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [r for r in project["optional-dependencies"]["training"]
            if re.match(r"torch\b", r)]
    assert len(pins) == 1 and re.fullmatch(r"torch==[\w.+]+", pins[0]), pins
    assert not any(re.match(r"(torch|transformers|scipy)\b", r) for r in project["dependencies"])
    return pins[0]


def test_dockerfile_runs_as_non_root_with_healthcheck_and_no_torch():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "USER slewguard" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs and all('pip install ".${EXTRAS:+[$EXTRAS]}"' in line for line in installs), (
        "the runtime image installs the base package, plus only the extras asked for")
    assert 'ARG EXTRAS=""' in text  # by default none: no scipy, no torch
    assert "whl/cpu" not in text and torch_pin() not in text
    assert "COPY slewguard ./slewguard" in text  # the shipped models come with the package
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["slewguard"]
    assert "**/*.onnx" in package_data and "**/*.json" in package_data


def test_setup_installs_the_torch_pin_of_pyproject():
    # setup.sh installs torch before the extras (its CPU build from local disk): the same pin.
    assert f'"{torch_pin()}"' in (ROOT / "scripts" / "setup.sh").read_text()


def test_systemd_unit_is_hardened_and_restarts():
    text = (DEPLOY / "systemd/slewguard.service").read_text()
    for key in ("Restart=always", "NoNewPrivileges=yes", "ProtectSystem=strict",
                "ExecReload=/bin/kill -HUP $MAINPID", "User=slewguard"):
        assert key in text
    verify = shutil.which("systemd-analyze")
    if verify:
        unit = str(DEPLOY / "systemd/slewguard.service")
        out = subprocess.run([verify, "verify", "--man=no", unit], capture_output=True, text=True)
        assert "Unknown key" not in out.stderr and "Unknown section" not in out.stderr
