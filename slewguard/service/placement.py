"""Where a window comes from: the topic and the sensors config resolved to a ``Placement``.

``SensorMap.resolve(topic, window)`` finds the sensors entry matching a message and returns its
site / asset / bearing / sensor names, bearing geometry, rpm source and quality expectations, or
raises ``WindowError("unknown_sensor")`` (the pipeline dead-letters it).

Example:
    >>> WindowError("unknown_sensor", "no entry").reason
    'unknown_sensor'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slewguard.service.payload import Window
from slewguard.signal.kinematics import BearingGeometry

if TYPE_CHECKING:
    from slewguard.service.config import ServiceConfig


class WindowError(ValueError):
    """A window that can never be diagnosed; ``reason`` is a short Prometheus label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Placement:
    """Where a window comes from and how to read it (from the topic and the sensor config)."""

    site: str
    asset: str
    bearing: str
    sensor: str
    geometry: BearingGeometry
    rpm: float | None = None  # a fixed speed that overrides the payload's
    fallback_rpm: float | None = None  # used when the payload carries no rpm
    sample_rate_hz: float | None = None  # expected rate; None accepts any
    check_quality: bool = True  # run the data-quality checks before diagnosing
    expected_rms: float | None = None  # the sensor's normal RMS (loose mount, dead channel)
    order_lines: tuple[float, ...] = ()  # shaft orders seen as lines (rpm-mismatch check)
    rpm_uncertainty: float = 0.0  # > 0: the rpm is nominal, estimate it within +- this




class SensorMap:
    """Resolves a message to its Placement from the config's sensor entries and the topic.

    Topics following ``plant/<site>/<asset>/<bearing>/<sensor>/vib`` name the place; other topics
    fall back to the configured site and the payload's sensor id.

    Example:
        >>> from slewguard.service.config import config_from_dict
        >>> cfg = config_from_dict({"site": "y", "sensors": [{"topic_filter": "plant/#",
        ...                         "bearing": "cwru-6205"}]}, env={})
        >>> import numpy as np
        >>> w = Window("s1", 0, 12000.0, 1797.0, 0, "g", np.zeros(4, np.float32))
        >>> SensorMap(cfg).resolve("plant/y/pump/de/s1/vib", w).asset
        'pump'
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.site = config.site
        self.sensors = list(config.sensors)
        self._geometry = [s.bearing.geometry() for s in self.sensors]  # parse presets once

    def resolve(self, topic: str, window: Window) -> Placement:
        """The Placement for ``topic``/``window``; raises WindowError("unknown_sensor") if none."""
        index = next((i for i, s in enumerate(self.sensors)
                      if s.matches(topic, window.sensor_id)), None)
        if index is None:
            raise WindowError("unknown_sensor", f"no sensors entry matches topic {topic!r} / "
                           f"sensor_id {window.sensor_id!r}: add one to the config")
        sensor = self.sensors[index]
        levels = topic.split("/")
        if len(levels) == 6 and levels[-1] == "vib":
            site, asset, bearing, name = levels[1:5]
        else:
            site, asset, bearing, name = self.site, "unknown", "unknown", window.sensor_id
        fixed = sensor.rpm if sensor.rpm_source == "fixed" else None
        return Placement(site, asset, bearing, name, self._geometry[index], rpm=fixed,
                         fallback_rpm=sensor.rpm, sample_rate_hz=sensor.sample_rate_hz,
                         check_quality=sensor.check_quality, expected_rms=sensor.expected_rms,
                         order_lines=tuple(sensor.order_lines),
                         rpm_uncertainty=sensor.rpm_uncertainty
                         if sensor.rpm_source == "nominal" else 0.0)
