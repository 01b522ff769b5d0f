"""InfluxSink against a real VictoriaMetrics (InfluxDB v2 write API) and a real HTTP server."""

from __future__ import annotations

import math
import time

import pytest

from slewguard.service.result import Result
from slewguard.service.sinks import PermanentSinkError, RetryableSinkError
from slewguard.service.sinks.influx import InfluxConfig, InfluxSink
from tests.service.services import free_port
from tests.service.vm import (
    VICTORIA_METRICS,
    StatusServer,
    start_victoria_metrics,
    victoria_metrics,  # noqa: F401 - pytest fixture
)

# VictoriaMetrics drops samples older than its retention (1 month): use recent windows.
T0_NS = (time.time_ns() // 10**9 - 3600) * 10**9


def results(n: int, sensor: str = "s1", first: int = 0, **kw) -> list[Result]:
    out = []
    for i in range(first, first + n):
        fields = dict(site="yard1", asset="crane1", bearing="slew", sensor=sensor, model="m1",
                      predicted="outer_race" if i % 3 == 0 else "healthy", confidence=0.5 + i / 1e3,
                      probabilities={"healthy": 0.3, "outer_race": 0.7},
                      features={"rms": 0.1 * i, "kurtosis": math.nan}, rpm=6.0, seq=i,
                      start_ns=T0_NS + i * 10**9 + 123_456, topic="plant/yard1/crane1/slew/s1/vib")
        fields.update(kw)
        out.append(Result(**fields))
    return out


def sink_for(url: str) -> InfluxSink:
    return InfluxSink(InfluxConfig(url=url, token="t", measurement="bearing_diagnosis",
                                   timeout_s=2.0))


def test_points_carry_tags_numeric_fields_and_window_time(victoria_metrics):  # noqa: F811
    batch = results(12)
    sink_for(victoria_metrics.url).write(batch)
    conf = victoria_metrics.points("bearing_diagnosis_confidence")
    labels = {dict(k)["predicted"]: dict(k) for k in conf}
    assert labels["healthy"] == {"site": "yard1", "asset": "crane1", "bearing": "slew",
                                 "sensor": "s1", "model": "m1", "predicted": "healthy"}
    samples = sorted(p for pts in conf.values() for p in pts)
    assert samples == [(r.start_ns // 10**6, pytest.approx(r.confidence)) for r in batch]
    seqs = sorted(v for pts in victoria_metrics.points("bearing_diagnosis_seq").values()
                  for _, v in pts)
    assert seqs == list(range(12))
    assert sum(len(v) for v in victoria_metrics.points("bearing_diagnosis_p_outer_race")
               .values()) == 12
    assert victoria_metrics.points("bearing_diagnosis_kurtosis") == {}  # NaN is left out


def test_same_window_twice_has_one_point_identity(victoria_metrics, tmp_path):  # noqa: F811
    batch = results(5)
    sink = sink_for(victoria_metrics.url)
    sink.write(batch)
    sink.write(batch[2:4])  # a redelivered part of the batch
    raw = victoria_metrics.points("bearing_diagnosis_rms")
    stamps = sorted(t for pts in raw.values() for t, _ in pts)
    # VictoriaMetrics stores what it is sent: the repeats land on the very same series and
    # timestamp, which is exactly the point InfluxDB overwrites.
    assert stamps == sorted([r.start_ns // 10**6 for r in batch + batch[2:4]])
    deduped = start_victoria_metrics(tmp_path / "vm-dedup", dedup=True)
    try:
        sink = sink_for(deduped.url)
        sink.write(batch)
        sink.write(batch[2:4])
        once = deduped.points("bearing_diagnosis_rms")
        assert sorted(t for pts in once.values() for t, _ in pts) == [
            r.start_ns // 10**6 for r in batch]
    finally:
        deduped.stop()


@pytest.mark.skipif(VICTORIA_METRICS is None, reason="victoria-metrics not installed")
def test_database_down_is_retryable(tmp_path):
    vm = start_victoria_metrics(tmp_path / "vm")
    sink = sink_for(vm.url)
    vm.stop()
    with pytest.raises(RetryableSinkError) as exc:
        sink.write(results(1))
    assert exc.value.reason == "connection"
    vm.start()
    try:
        sink.write(results(1))  # the same sink object recovers
        assert len(vm.points("bearing_diagnosis_confidence")) == 1
    finally:
        vm.stop()


def test_nothing_listening_is_retryable():
    with pytest.raises(RetryableSinkError, match="connection"):
        sink_for(f"http://127.0.0.1:{free_port()}").write(results(1))


@pytest.mark.parametrize("status,kind,reason", [
    (400, PermanentSinkError, "http_400"),
    (413, PermanentSinkError, "http_413"),
    (422, PermanentSinkError, "http_422"),
    (429, RetryableSinkError, "http_429"),
    (500, RetryableSinkError, "http_500"),
    (503, RetryableSinkError, "http_503"),
    (401, RetryableSinkError, "http_401"),
    (404, RetryableSinkError, "http_404"),
])
def test_http_status_classification(status, kind, reason):
    server = StatusServer(lambda body: (status, f"field type conflict in {body[:17]}"))
    try:
        with pytest.raises(kind) as exc:
            sink_for(server.url).write(results(2))
        assert exc.value.reason == reason
        assert type(exc.value) is kind
        if status == 400:
            assert "field type conflict in bearing_diagnosis" in str(exc.value)
        if status == 401:
            assert "check sinks.influx.token" in str(exc.value)
        assert len(server.bodies) == 1  # no hidden client-side retries: the forwarder owns them
        assert server.bodies[0].count("\n") == 1  # two points, one request
    finally:
        server.close()


def test_empty_batch_sends_nothing():
    server = StatusServer(lambda body: (204, ""))
    try:
        sink_for(server.url).write([])
        assert server.bodies == []
    finally:
        server.close()
