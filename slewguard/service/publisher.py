"""A simulated sensor fleet: slewing bearings that publish vibration windows over MQTT.

Sensor i sits on ``plant/<site>/crane<i>/slew/s<i>/vib``. A fraction of the fleet develops a
fault (inner race, outer race, rolling element, in turn): its severity ramps linearly from 0
(healthy signal) to ``max_severity`` over ``ramp_windows`` windows, so a dashboard watches faults
appear. Windows come from ``slewguard.signal.simulate`` and travel in the binary payload format;
their timestamps are simulated time (one window after another from the fleet's start), so every
(sensor, start_ns) is unique and a re-run with the same ``start_ns`` reproduces the same keys.

Example:
    >>> fleet = Fleet(FleetSpec(sensors=2, bearing="cwru-6205", rpm=1797.0,
    ...                         sample_rate_hz=12000.0, window_seconds=0.5))
    >>> [s.fault for s in fleet.sensors]
    ['healthy', 'inner_race']
    >>> topic, payload = fleet.message(fleet.sensors[1], 0)
    >>> topic, payload[:4]
    ('plant/yard1/crane2/slew/s2/vib', b'SLGW')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import paho.mqtt.client as mqtt
from pydantic import BaseModel, ConfigDict, Field

from slewguard.service.payload import Window, encode_binary

log = logging.getLogger(__name__)
FAULT_CYCLE = ("inner_race", "outer_race", "rolling_element")


class FleetSpec(BaseModel):
    """What the simulated fleet looks like and how fast it talks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str = Field("yard1", description="Site name in the topics.")
    sensors: int = Field(4, ge=1, le=10_000, description="Number of sensors (one per bearing).")
    faulty_fraction: float = Field(0.5, ge=0, le=1, description="Share of sensors that develop "
                                   "a fault; the last ones in the fleet.")
    bearing: str = Field("slew-4pc-1000", description="Bearing preset of every sensor.")
    rpm: float = Field(6.0, gt=0, description="Constant shaft speed in rpm.")
    sample_rate_hz: float = Field(5000.0, description="Sample rate in Hz.")
    window_seconds: float = Field(20.0, gt=0, description="Window length in seconds.")
    snr_db: float = Field(0.0, description="Signal-to-noise ratio of the simulated windows.")
    max_severity: float = Field(2.0, ge=0, description="Severity a faulty bearing ramps up to.")
    ramp_windows: int = Field(10, ge=1, description="Windows until a fault reaches max_severity.")
    healthy_windows: int = Field(0, ge=0, description="Windows every sensor sends healthy "
                                 "before its fault starts: the commissioning the daemon learns "
                                 "each bearing's baseline from.")
    sample_format: Literal["int16", "float32"] = Field("int16", description="Payload samples.")
    start_ns: int | None = Field(None, ge=0, description="Timestamp of window 0; None: now.")
    seed: int = Field(0, ge=0, description="Random seed of the whole fleet.")


@dataclass(frozen=True)
class SimulatedSensor:
    """One sensor of the fleet and the fault its bearing develops ("healthy" for none)."""

    index: int
    sensor_id: str
    topic: str
    fault: str


class Fleet:
    """The sensors of a FleetSpec and the payload of each one's k-th window."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.start_ns = spec.start_ns if spec.start_ns is not None else time.time_ns()
        n_faulty = round(spec.sensors * spec.faulty_fraction)
        self.sensors = [
            SimulatedSensor(i, f"s{i + 1}", f"plant/{spec.site}/crane{i + 1}/slew/s{i + 1}/vib",
                            "healthy" if i < spec.sensors - n_faulty
                            else FAULT_CYCLE[(i - spec.sensors + n_faulty) % len(FAULT_CYCLE)])
            for i in range(spec.sensors)]

    def severity(self, sensor: SimulatedSensor, k: int) -> float:
        """Fault severity of ``sensor``'s window ``k`` (0 for healthy bearings and during the
        first ``healthy_windows``)."""
        k -= self.spec.healthy_windows
        if sensor.fault == "healthy" or k < 0:
            return 0.0
        return self.spec.max_severity * min(1.0, (k + 1) / self.spec.ramp_windows)

    def truth(self, sensor: SimulatedSensor, k: int) -> str:
        """What ``sensor``'s window ``k`` carries: its fault, or healthy while its severity is 0."""
        return sensor.fault if self.severity(sensor, k) > 0 else "healthy"

    def message(self, sensor: SimulatedSensor, k: int) -> tuple[str, bytes]:
        """``(topic, binary payload)`` of ``sensor``'s window ``k`` (deterministic)."""
        from slewguard.signal.scenario import SimulationSpec
        from slewguard.signal.simulate import simulate  # scipy: slow import

        s = self.spec
        severity = self.severity(sensor, k)
        sim_spec = SimulationSpec(
            fault=sensor.fault if severity > 0 else "healthy", bearing=s.bearing, rpm=s.rpm,
            sample_rate_hz=s.sample_rate_hz, window_seconds=s.window_seconds, snr_db=s.snr_db,
            severity=severity if severity > 0 else 1.0)
        sim = simulate(sim_spec, n_windows=1, seed=s.seed * 1_000_003 + sensor.index * 10_007 + k)
        window = Window(sensor.sensor_id, self.start_ns + int(k * s.window_seconds * 1e9),
                        s.sample_rate_hz, float(sim.rpm[0]), k, "g", sim.windows[0])
        return sensor.topic, encode_binary(window, s.sample_format)

    def messages(self, count: int) -> Iterator[tuple[str, bytes]]:
        """Windows 0..count-1 of every sensor, round by round."""
        for k in range(count):
            for sensor in self.sensors:
                yield self.message(sensor, k)


def connect(host: str, port: int, client_id: str = "", username: str | None = None,
            password: str | None = None, protocol: str = "5",
            timeout_s: float = 10.0) -> mqtt.Client:
    """A connected, looping paho client for publishing; the caller disconnects it.

    ``protocol`` is "5" or "3.1.1" (e.g. for amqtt, which speaks only 3.1.1). Raises
    ConnectionError when the broker does not accept the connection within ``timeout_s``.

    Example:
        >>> client = connect("127.0.0.1", 1883)   # doctest: +SKIP
    """
    if protocol not in ("5", "3.1.1"):
        raise ValueError(f"protocol={protocol!r} must be '5' or '3.1.1'")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311)
    if username:
        client.username_pw_set(username, password)
    client.max_inflight_messages_set(64)
    client.connect(host, port)
    client.loop_start()
    deadline = time.monotonic() + timeout_s
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not client.is_connected():
        client.loop_stop()
        raise ConnectionError(f"broker {host}:{port} did not accept an MQTT {protocol} "
                              f"connection within {timeout_s} s: check the address, the "
                              "protocol (--protocol 3.1.1 for amqtt) and the credentials")
    return client


class Publisher:
    """Publishes a Fleet's windows (QoS 1) through ``client`` at ``rate_hz`` rounds per second."""

    def __init__(self, fleet: Fleet, client: mqtt.Client, qos: int = 1) -> None:
        self.fleet = fleet
        self.client = client
        self.qos = qos
        self.published = 0

    def run(self, count: int, rate_hz: float = 0.0, stop: threading.Event | None = None,
            on_round: Callable[[int], object] | None = None) -> int:
        """Publish ``count`` windows per sensor; ``rate_hz`` rounds/s (0: as fast as possible).

        Waits for each round's broker acknowledgements, so memory stays bounded; calls
        ``on_round(published_so_far)`` after each round. Returns the number published.

        Example:
            >>> Publisher(Fleet(FleetSpec()), connect("127.0.0.1", 1883)).run(3)  # doctest: +SKIP
            12

            Without a broker, any object with paho's ``publish`` stands in for the client:

            >>> from types import SimpleNamespace
            >>> class Client:
            ...     def publish(self, topic, payload, qos):
            ...         return SimpleNamespace(wait_for_publish=lambda timeout: True)
            >>> fleet = Fleet(FleetSpec(sensors=2, bearing="cwru-6205", rpm=1797.0,
            ...                         sample_rate_hz=12000.0, window_seconds=0.5))
            >>> Publisher(fleet, Client()).run(3, on_round=print)
            2
            4
            6
            6
        """
        if count < 1:
            raise ValueError(f"count={count} must be >= 1 (windows per sensor)")
        if rate_hz < 0:
            raise ValueError(f"rate_hz={rate_hz} must be >= 0 (0 publishes as fast as possible)")
        stop = stop or threading.Event()
        period_s = 1.0 / rate_hz if rate_hz > 0 else 0.0
        next_round = time.monotonic()
        for k in range(count):
            if stop.is_set():
                break
            infos = [self.client.publish(topic, payload, qos=self.qos)
                     for topic, payload in (self.fleet.message(s, k) for s in self.fleet.sensors)]
            for info in infos:
                info.wait_for_publish(30)
            self.published += len(infos)
            if on_round is not None:
                on_round(self.published)
            next_round += period_s
            stop.wait(max(0.0, next_round - time.monotonic()))
        return self.published
