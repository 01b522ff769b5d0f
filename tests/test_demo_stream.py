"""The demo's summary, from a ledger and the daemon's metrics objects (no broker, no model)."""

from types import SimpleNamespace

import pytest

from slewguard.demo_stream import Ledger, summarise
from slewguard.service.metrics import Metrics


def test_the_summary_reads_stage_times_and_rejections_from_the_metrics_objects():
    sensor = SimpleNamespace(sensor_id="s1", fault="healthy")
    fleet = SimpleNamespace(sensors=[sensor], spec=SimpleNamespace(healthy_windows=2),
                            truth=lambda s, k: "healthy")
    ledger = Ledger(published_s={("s1", 0): 10.0, ("s1", 1): 11.0},
                    stored={("s1", 0): (SimpleNamespace(predicted="healthy"), 10.5)})
    metrics = Metrics()
    for seconds in (0.01, 0.03):
        metrics.stage_seconds.labels(stage="inference").observe(seconds)
    metrics.stage_seconds.labels(stage="trust").observe(1.0)  # not a stage the summary shows
    metrics.windows_rejected_total.labels(reason="decode").inc(2)
    metrics.windows_rejected_total.labels(reason="unknown_sensor").inc()
    summary = summarise(fleet, ledger, metrics)
    assert summary["stage_mean_ms"] == {"inference": pytest.approx(20.0)}  # observed ones only
    assert summary["rejected"] == 3
    assert (summary["published"], summary["stored"], summary["missing"]) == (2, 1, ["s1#1"])
    assert summary["accuracy"] == 1.0
