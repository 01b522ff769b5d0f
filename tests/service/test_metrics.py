import json
import subprocess

import pytest

from slewguard.service.health import HealthServer, failed_checks
from slewguard.service.metrics import STAGES, Metrics
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


@needs_prometheus
def test_promtool_rejects_a_badly_named_metric():
    # The lint is real: a camelCase counter without _total fails it.
    bad = b"# HELP fooBar x\n# TYPE fooBar counter\nfooBar 1\n"
    lint = subprocess.run([services.PROMTOOL, "check", "metrics"], input=bad, capture_output=True)
    assert lint.returncode != 0


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
