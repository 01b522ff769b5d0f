"""``ServiceConfig``, the root of the tree: one field per section of the YAML file."""

from __future__ import annotations

from pydantic import Field, field_validator

from slewguard.service.config.alerts import AlertsConfig
from slewguard.service.config.base import StrictModel
from slewguard.service.config.evidence import EvidenceConfig
from slewguard.service.config.http import HttpConfig
from slewguard.service.config.ingest import IngestConfig
from slewguard.service.config.log import LoggingConfig
from slewguard.service.config.model import InferenceConfig, ModelConfig
from slewguard.service.config.mqtt import MqttConfig
from slewguard.service.config.sensors import SensorConfig
from slewguard.service.config.sinks import OutboxConfig, SinkConfig, typed_sinks
from slewguard.service.payload import MAX_SAMPLE_RATE_HZ, max_window_bytes


class ServiceConfig(StrictModel):
    """Everything ``slewguard serve`` needs."""

    site: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="Site name, used as a tag and in topics.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection.")
    sensors: list[SensorConfig] = Field(min_length=1, description="Sensor entries; the first "
                                        "that matches a message applies.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Classifier.")
    inference: InferenceConfig = Field(default_factory=InferenceConfig, description="Batching.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Message size limit.")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Durable outbox.")
    sinks: dict[str, SinkConfig | None] = Field(
        default_factory=dict, description="The sinks after the outbox: a name of your choosing "
        "-> that sink's settings, with a `type` (`influx`: InfluxDB or VictoriaMetrics); null "
        "turns one off. Each type's keys are listed below.")
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, description="Defect "
                                     "evidence, speed estimate and bearing baselines.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="Metrics and health HTTP.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Bearing-state voting, "
                                 "state gauges and alert webhooks.")

    @field_validator("sinks", mode="before")
    @classmethod
    def _typed_sinks(cls, value: object) -> object:
        return typed_sinks(value)

    def max_payload_bytes(self) -> int:
        """``ingest.max_payload_bytes``, or the largest window the sensors allow when unset.

        Example:
            >>> ServiceConfig(site="y", sensors=[{"sensor_id": "s1", "bearing": "cwru-6205",
            ...                                   "sample_rate_hz": 12000}]).max_payload_bytes()
            2880186
        """
        if self.ingest.max_payload_bytes is not None:
            return self.ingest.max_payload_bytes
        rates = [s.sample_rate_hz for s in self.sensors]
        top = MAX_SAMPLE_RATE_HZ if None in rates else max(r for r in rates if r is not None)
        return max_window_bytes(min(top, MAX_SAMPLE_RATE_HZ))

    def sensor_for(self, topic: str, sensor_id: str | None = None) -> SensorConfig | None:
        """The first sensor entry matching ``topic`` (and ``sensor_id``), or None.

        Example:
            >>> cfg = ServiceConfig(site="y", sensors=[{"topic_filter": "plant/+/+/+/s1/vib",
            ...                                         "bearing": "slew-4pc-1000"}])
            >>> cfg.sensor_for("plant/y/crane/slew/s1/vib").bearing.preset
            'slew-4pc-1000'
            >>> cfg.sensor_for("plant/y/crane/slew/s2/vib") is None
            True
        """
        return next((s for s in self.sensors if s.matches(topic, sensor_id)), None)
