"""The ``sensors`` entries: which messages they match and the bearing each one watches.

Example:
    >>> SensorConfig(sensor_id="s1", bearing="cwru-6205").matches("any/topic", "s1")
    True
"""

from __future__ import annotations

import math
from typing import Any, Literal

from paho.mqtt.client import topic_matches_sub
from pydantic import Field, model_validator

from slewguard.service.config.base import StrictModel
from slewguard.service.config.mqtt import check_filter
from slewguard.signal import kinematics


class BearingConfig(StrictModel):
    """Bearing geometry: a preset name, or the four numbers of an inline geometry."""

    preset: str | None = Field(None, description="Preset name from signal/bearings.csv.")
    pitch_diameter_mm: float | None = Field(None, description="Pitch circle diameter in mm.")
    element_diameter_mm: float | None = Field(None, description="Rolling-element diameter in mm.")
    n_elements: int | None = Field(None, description="Number of rolling elements.")
    contact_angle_deg: float = Field(0.0, description="Contact angle in degrees.")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"preset": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_kind(self) -> BearingConfig:
        self.geometry()  # raises ValueError naming the bad number or the known presets
        return self

    def geometry(self) -> kinematics.BearingGeometry:
        """The ``BearingGeometry`` this entry describes.

        Example:
            >>> BearingConfig(preset="cwru-6205").geometry().n_elements
            9
        """
        numbers = (self.pitch_diameter_mm, self.element_diameter_mm, self.n_elements)
        if self.preset is not None:
            if any(v is not None for v in numbers):
                raise ValueError("give either preset or the inline geometry numbers, not both")
            return kinematics.preset(self.preset)
        if any(v is None for v in numbers):
            raise ValueError("an inline bearing needs pitch_diameter_mm, element_diameter_mm and "
                             f"n_elements (or a preset name from {sorted(kinematics.presets())})")
        return kinematics.BearingGeometry("inline", *numbers, self.contact_angle_deg)


class SensorConfig(StrictModel):
    """How to interpret windows from matching sensors."""

    topic_filter: str | None = Field(None, description="MQTT filter the message topic must match.")
    sensor_id: str | None = Field(None, description="Sensor id the payload must carry.")
    bearing: BearingConfig = Field(description="Bearing preset name or inline geometry.")
    rpm_source: Literal["payload", "fixed", "nominal"] = Field(
        "payload", description="Take shaft speed from each payload, use the fixed rpm, or "
        "'nominal': the payload's rpm (else the configured one) is only a setpoint, and the "
        "speed is estimated from the window within +-rpm_uncertainty.")
    rpm_uncertainty: float = Field(0.08, gt=0, le=0.3, description="With rpm_source 'nominal': "
                                   "how far the true speed may be from the nominal one "
                                   "(fraction, 0.08 = +-8 %).")
    rpm: float | None = Field(None, description="Shaft speed in rpm; required for 'fixed', the "
                              "fallback when a payload carries none.")
    sample_rate_hz: float | None = Field(None, gt=0, description="Expected sample rate; windows "
                                         "at another rate get the verdict "
                                         "sensor_fault:sample_rate_mismatch. None accepts any.")
    check_quality: bool = Field(True, description="Run the data-quality checks (out of "
                                "range, flat line, clipping, spikes, drop-outs, DC offset, "
                                "drift, loose mount, rate and rpm mismatch) before diagnosing.")
    expected_rms: float | None = Field(None, gt=0, description="The sensor's normal RMS in its "
                                       "unit (e.g. g); enables the loose-mount and dead-channel "
                                       "level checks. None skips them.")
    order_lines: list[float] = Field(default_factory=list, description="Shaft orders that show "
                                     "as spectral lines (e.g. the ring-gear tooth count for the "
                                     "mesh); enables the rpm-mismatch check at constant speed.")

    @model_validator(mode="after")
    def _match_and_rpm(self) -> SensorConfig:
        if self.topic_filter is None and self.sensor_id is None:
            raise ValueError("give topic_filter, sensor_id or both to say which sensors this is")
        if self.topic_filter is not None:
            check_filter(self.topic_filter, "topic_filter")
        if self.rpm_source == "fixed" and self.rpm is None:
            raise ValueError("rpm_source 'fixed' needs rpm (the constant shaft speed in rpm)")
        if self.rpm is not None and not (math.isfinite(self.rpm) and self.rpm != 0):
            raise ValueError(f"rpm={self.rpm} must be a finite, non-zero shaft speed")
        return self

    def matches(self, topic: str, sensor_id: str | None = None) -> bool:
        """True when this entry applies to a message on ``topic`` from ``sensor_id``."""
        if self.topic_filter is not None and not topic_matches_sub(self.topic_filter, topic):
            return False
        return self.sensor_id is None or self.sensor_id == sensor_id
