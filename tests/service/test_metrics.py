import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from slewguard.service.config.alerts import AlertsConfig
from slewguard.service.health import HealthServer, failed_checks
from slewguard.service.metrics import STAGES, Metrics, gauge_value, histogram_totals
from slewguard.service.result import Result
from slewguard.service.sinks.alerts import AlertSink
from tests.service import services
from tests.service.conftest import needs_prometheus
from tests.service.services import http_get as _get


@pytest.fixture
def busy_metrics() -> Metrics:
    """Every metric family with at least one sample, as a running daemon would have them."""
    m = Metrics()
    m.set_build_info("0.1.0", "tiny-bert")
    m.windows_received_total.inc(3)
    m.windows_processed_total.inc(2)
    m.windows_rejected_total.labels(reason="checksum").inc()
    m.dead_letters_total.labels(reason="checksum").inc()
    m.results_total.labels(predicted="inner_race").inc(2)
    for stage in STAGES:
        m.stage_seconds.labels(stage=stage).observe(0.01)
    m.batch_windows.observe(2)
    m.last_window_timestamp_seconds.labels(site="s", asset="crane1", bearing="slew").set(1.7e9)
    m.sink_writes_total.labels(sink="influx", outcome="ok").inc()
    m.sink_write_seconds.labels(sink="influx").observe(0.003)
    m.outbox_set_aside_total.labels(reason="schema").inc()
    return m


@needs_prometheus
def test_promtool_accepts_the_served_exposition(busy_metrics):
    server = HealthServer(busy_metrics, {}, port=0)
    server.start()
    try:
        status, body = _get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.stop()
    assert status == 200
    assert b'slewguard_results_total{predicted="inner_race"} 2.0' in body
    lint = subprocess.run([services.PROMTOOL, "check", "metrics"], input=body, capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


# The series the shipped alert rules and dashboards query: slewguard's metric contract.
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERIES = re.compile(r"\b(slewguard_\w+)(?:\{([^}]*)\})?")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")  # Grafana's {{label}} in a legend
ADDED_BY_PROMETHEUS = {"le", "instance", "job"}


def _queries() -> list[tuple[str, set[str]]]:
    """(PromQL, labels its output is read by) of every alert rule, dashboard panel and
    dashboard variable: annotations' ``$labels.x``, legends' ``{{x}}``, ``label_values(..., x)``."""
    found = []
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "slewguard.yml").read_text())
    for rule in (r for group in rules["groups"] for r in group["rules"]):
        found.append((rule["expr"], set(re.findall(r"\$labels\.(\w+)",
                                                   json.dumps(rule.get("annotations", {}))))))
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        stack = list(board.get("panels", []))
        while stack:
            panel = stack.pop()
            stack += panel.get("panels", [])  # rows nest their panels
            found += [(t["expr"], set(LEGEND.findall(t.get("legendFormat", ""))))
                      for t in panel.get("targets", []) if t.get("expr")]
        for var in board.get("templating", {}).get("list", []):
            query = var.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            if (m := re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)):
                found.append((m.group(1), {m.group(2)}))
    return found


def queried_series() -> dict[str, set[str]]:
    """Each slewguard_* series name the rules and dashboards query, with the labels those
    queries select on, group by or show."""
    labels: dict[str, set[str]] = {}
    for expr, shown in _queries():
        grouped = {x.strip() for g in re.findall(r"\bby \(([^)]*)\)", expr) for x in g.split(",")}
        for name, selector in SERIES.findall(expr):
            selected = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
            labels.setdefault(name, set()).update(grouped | selected | shown)
    return labels


def family_of(series: str) -> tuple[str, str]:
    """The metric family and type a series name belongs to (Prometheus naming)."""
    if series.endswith(("_bucket", "_sum", "_count")):
        return series.rsplit("_", 1)[0], "histogram"
    if series.endswith("_total"):
        return series.removesuffix("_total"), "counter"
    return series, "gauge"


def test_exposition_has_the_names_types_and_labels_the_rules_and_dashboards_query(
        busy_metrics, tmp_path):
    sink = AlertSink(AlertsConfig(k=1, n=1), tmp_path / "alerts.sqlite3", busy_metrics.registry)
    try:  # one voted window: the bearing-state gauges get their series
        sink.write([Result("s", "crane1", "slew", "acc1", "tiny-bert", "inner_race", 0.9,
                           {"healthy": 0.1, "inner_race": 0.9},
                           {"rms": 0.2, "kurtosis": 3.0, "crest_factor": 4.0,
                            "env_bpfi_h1_db": 11.0}, 6.0, 0, 1, "plant/s/crane1/slew/acc1/vib")])
    finally:
        sink.close()
    families = {f.name: f for f in text_string_to_metric_families(
        busy_metrics.exposition().decode())}
    assert all(name.startswith("slewguard_") for name in families)
    queried = queried_series()
    assert len(queried) >= 15
    for series, wanted in sorted(queried.items()):
        name, kind = family_of(series)
        assert name in families, f"{series} is queried but slewguard exposes no {name}"
        family = families[name]
        assert family.type == kind, f"{series}: slewguard exposes {name} as a {family.type}"
        assert family.samples, f"busy_metrics gives {name} no sample: add one to the fixture"
        exposed = {label for sample in family.samples for label in sample.labels}
        missing = wanted - ADDED_BY_PROMETHEUS - exposed
        assert not missing, f"{series} is queried by {missing} but has labels {exposed}"


def test_readyz_names_each_failed_check_and_healthz_stays_up():
    broker_up = {"value": False}
    checks = {"broker": lambda: None if broker_up["value"] else "not connected",
              "model": lambda: None}
    server = HealthServer(Metrics(), checks, port=0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, body = _get(base + "/readyz")
        assert status == 503
        assert json.loads(body) == {"ready": False, "reasons": {"broker": "not connected"}}
        assert _get(base + "/healthz")[0] == 200
        broker_up["value"] = True
        status, body = _get(base + "/readyz")
        assert status == 200 and json.loads(body)["ready"] is True
        assert _get(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_a_raising_check_counts_as_not_ready():
    def broken() -> str | None:
        raise OSError("disk gone")

    assert "disk gone" in failed_checks({"outbox": broken})["outbox"]


def test_each_metrics_object_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.windows_received_total.inc()
    assert b"slewguard_windows_received_total 0.0" in b.exposition()


def test_the_readers_take_the_metric_objects_and_match_the_registry():
    m = Metrics()
    m.queue_depth.set(4)
    m.stage_seconds.labels(stage="decode").observe(0.5)
    m.stage_seconds.labels(stage="decode").observe(0.25)
    m.stage_seconds.labels(stage="inference").observe(2.0)
    sample = m.registry.get_sample_value
    assert gauge_value(m.queue_depth) == sample("slewguard_queue_depth") == 4.0
    assert histogram_totals(m.stage_seconds, stage="decode") == (
        sample("slewguard_stage_duration_seconds_sum", {"stage": "decode"}),
        sample("slewguard_stage_duration_seconds_count", {"stage": "decode"})) == (0.75, 2.0)
    assert histogram_totals(m.stage_seconds, stage="outbox") == (0.0, 0.0)  # none yet
    with pytest.raises(ValueError, match="labels"):
        gauge_value(m.last_window_timestamp_seconds)  # one series per bearing: read one
