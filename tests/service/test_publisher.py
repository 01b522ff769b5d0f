"""The simulated sensor fleet: faults, severity ramps, payloads, publishing to a real broker."""

import subprocess
import sys

import numpy as np
import pytest

from slewguard.service.cli import parse_broker
from slewguard.service.payload import decode
from slewguard.service.publisher import Fleet, FleetSpec, Publisher, connect
from tests.service import services

FAST = dict(bearing="cwru-6205", rpm=1797.0, sample_rate_hz=12000.0, window_seconds=0.25,
            start_ns=1_700_000_000_000_000_000)


def test_fleet_mixes_healthy_and_faulty_bearings():
    fleet = Fleet(FleetSpec(sensors=5, faulty_fraction=0.6, **FAST))
    assert [s.fault for s in fleet.sensors] == ["healthy", "healthy", "inner_race", "outer_race",
                                                "rolling_element"]
    assert fleet.sensors[4].topic == "plant/yard1/crane5/slew/s5/vib"


def test_fault_severity_ramps_up_then_holds():
    fleet = Fleet(FleetSpec(sensors=2, max_severity=3.0, ramp_windows=3, **FAST))
    healthy, faulty = fleet.sensors
    assert [fleet.severity(faulty, k) for k in range(5)] == [1.0, 2.0, 3.0, 3.0, 3.0]
    assert fleet.severity(healthy, 4) == 0.0


def test_messages_decode_to_the_windows_they_describe():
    fleet = Fleet(FleetSpec(sensors=2, **FAST))
    topic, payload = fleet.message(fleet.sensors[1], 3)
    w = decode(payload)
    assert (w.sensor_id, w.seq, w.sample_rate_hz, w.rpm) == ("s2", 3, 12000.0, 1797.0)
    assert w.start_ns == FAST["start_ns"] + 3 * 250_000_000
    assert w.samples.shape == (3000,)
    assert fleet.message(fleet.sensors[1], 3) == (topic, payload)  # deterministic
    assert fleet.message(fleet.sensors[1], 4)[1] != payload


def test_a_growing_fault_raises_the_kurtosis():
    fleet = Fleet(FleetSpec(sensors=1, faulty_fraction=1.0, ramp_windows=10, max_severity=5.0,
                            snr_db=0.0, **{**FAST, "window_seconds": 1.0}))
    sensor = fleet.sensors[0]

    def kurtosis(k: int) -> float:
        x = decode(fleet.message(sensor, k)[1]).samples.astype(np.float64)
        x = x - x.mean()
        return float(np.mean(x**4) / np.mean(x**2) ** 2 - 3)

    assert kurtosis(9) > kurtosis(0)


@pytest.mark.services
def test_publisher_sends_every_window_to_a_real_broker(mosquitto):
    collector = services.Collector(mosquitto.port, ["plant/#"])
    client = connect("127.0.0.1", mosquitto.port)
    try:
        rounds = []
        sent = Publisher(Fleet(FleetSpec(sensors=3, **FAST)), client).run(
            4, rate_hz=0, on_round=rounds.append)
        got = collector.wait_for(12)
    finally:
        client.loop_stop()
        client.disconnect()
        collector.close()
    assert sent == 12 and rounds == [3, 6, 9, 12]
    keys = {(decode(payload).sensor_id, decode(payload).seq) for _, payload, _ in got}
    assert keys == {(f"s{i}", k) for i in (1, 2, 3) for k in range(4)}


@pytest.mark.services
def test_simulate_publish_command(mosquitto):
    collector = services.Collector(mosquitto.port, ["plant/#"])
    try:
        out = subprocess.run(
            [sys.executable, "-m", "slewguard.cli", "simulate", "--publish", "--broker",
             f"127.0.0.1:{mosquitto.port}", "--sensors", "2", "--count", "3", "--rate", "0",
             "--bearing", "cwru-6205", "--rpm", "1797", "--sample-rate-hz", "12000",
             "--window-seconds", "0.25", "--site", "dock"],
            capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        got = collector.wait_for(6)
    finally:
        collector.close()
    assert "published 6 windows" in out.stdout
    assert {topic for topic, _, _ in got} == {"plant/dock/crane1/slew/s1/vib",
                                              "plant/dock/crane2/slew/s2/vib"}


def test_bad_broker_address_names_the_fix():
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_broker("localhost")
    assert parse_broker("[::1]:1883") == ("[::1]", 1883)


def test_publisher_rejects_a_bad_count():
    with pytest.raises(ValueError, match="count=0"):
        Publisher(Fleet(FleetSpec(**FAST)), client=None).run(0)


def test_commissioning_windows_are_healthy_then_the_fault_ramps():
    from slewguard.service.publisher import Fleet, FleetSpec

    fleet = Fleet(FleetSpec(sensors=2, faulty_fraction=0.5, ramp_windows=2, healthy_windows=3,
                            window_seconds=2.0, rpm=12.0, seed=1))
    faulty = next(s for s in fleet.sensors if s.fault != "healthy")
    assert [fleet.severity(faulty, k) for k in range(6)] == [0.0, 0.0, 0.0, 1.0, 2.0, 2.0]
    assert [fleet.truth(faulty, k) for k in (2, 3)] == ["healthy", faulty.fault]
    healthy = next(s for s in fleet.sensors if s.fault == "healthy")
    assert {fleet.truth(healthy, k) for k in range(6)} == {"healthy"}
