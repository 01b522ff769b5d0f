"""The one-line INFO status: counted from the real metrics and outbox, and logged by serve."""

import time

import pytest

from slewguard.service.metrics import Metrics
from slewguard.service.outbox import Outbox
from slewguard.service.result import Result
from slewguard.service.status import StatusLine
from tests.service import services
from tests.service.services import wait_until
from tests.service.test_app import fleet_messages, start_app


def test_the_line_covers_the_interval_since_the_previous_one(tmp_path):
    metrics, now = Metrics(), [100.0]
    outbox = Outbox(tmp_path / "o.sqlite3", clock=lambda: 1000.0)
    status = StatusLine(metrics, outbox, 256, clock=lambda: now[0])
    metrics.windows_processed_total.inc(600)
    metrics.windows_rejected_total.labels(reason="decode").inc(2)
    metrics.dead_letters_total.labels(reason="decode").inc(2)
    metrics.dead_letters_total.labels(reason="unknown_sensor").inc(1)
    metrics.queue_depth.set(7)
    metrics.mqtt_connected.set(1)
    outbox.put([Result("y", "a", "b", f"s{i}", "m", "healthy", 1.0, {}, {}, 6.0, 0, 10, "t")
                for i in range(4)])
    outbox.clock = lambda: 1012.5
    now[0] = 400.0
    assert status.line() == ("status: 2.0 windows/s (600 in 300 s), 2 rejected, queue 7/256, "
                             "outbox 4 pending (oldest 12.5 s), dead letters 3 (+3), broker "
                             "connected")
    metrics.mqtt_connected.set(0)
    outbox.mark_sent([i for i, _ in outbox.claim(10)])
    now[0] = 700.0
    assert status.line() == ("status: 0.0 windows/s (0 in 300 s), 0 rejected, queue 7/256, "
                             "outbox empty, dead letters 3 (+0), broker NOT connected")
    outbox.close()


def test_the_line_reads_the_queue_and_broker_gauges_not_their_neighbours(tmp_path):
    metrics = Metrics()
    outbox = Outbox(tmp_path / "o.sqlite3")
    status = StatusLine(metrics, outbox, 256, clock=lambda: 0.0)
    # every other gauge holds a value the line would show if it read that one instead
    metrics.model_loaded.set(1)
    metrics.outbox_depth.set(11)
    metrics.mqtt_inflight_messages.set(13)
    metrics.queue_depth.set(5)
    line = status.line()
    assert "queue 5/256" in line and line.endswith("broker NOT connected")
    metrics.mqtt_connected.set(1)
    metrics.queue_depth.set(0)
    line = status.line()
    assert "queue 0/256" in line and line.endswith("broker connected")
    outbox.close()


def test_the_gauges_are_read_as_attributes_not_by_name(tmp_path):
    metrics, outbox = Metrics(), Outbox(tmp_path / "o.sqlite3")
    status = StatusLine(metrics, outbox, 256)
    del metrics.mqtt_connected  # the series stays in the registry: a read by name would pass
    with pytest.raises(AttributeError, match="mqtt_connected"):
        status.line()
    outbox.close()


@pytest.mark.services
def test_a_serving_daemon_logs_its_status_at_info(mosquitto, tmp_path, classifier, caplog):
    caplog.set_level("INFO", logger="slewguard.service.status")
    app = start_app(tmp_path, mosquitto.port, classifier, logging={"status_interval_s": 0.5})
    try:
        services.publish(mosquitto.port, fleet_messages(2, 4))
        wait_until(lambda: app.metrics.registry.get_sample_value(
            "slewguard_windows_processed_total") == 8, what="8 windows diagnosed")
        seen = len(caplog.records)
        wait_until(lambda: len(caplog.records) > seen, 10, "a status line after the windows")
        time.sleep(0.1)
    finally:
        app.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "slewguard.service.status"]
    assert all(r.levelname == "INFO" for r in caplog.records if r.name.endswith("status"))
    assert lines and all(ln.startswith("status: ") and "broker connected" in ln for ln in lines)
    windows = sum(int(ln.split("(")[1].split(" in ")[0]) for ln in lines)
    assert windows == 8  # each line counts only its own interval
    assert "queue 0/16" in lines[-1]
