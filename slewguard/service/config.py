"""The daemon's configuration: one pydantic tree read from YAML plus environment overrides.

Every model forbids unknown keys and describes every field; units are in the names. Environment
variables ``SLEWGUARD_<SECTION>__<KEY>`` (``__`` between levels) override the file: text verbatim
(a password may start with ``[`` or be ``null``), flow YAML or JSON only for list and mapping
fields. Secrets belong there: ``SLEWGUARD_MQTT__PASSWORD``, ``SLEWGUARD_INFLUX__TOKEN``.
``load_config`` raises ``ConfigError`` listing every error with its key path.

Example:
    >>> sensor = {"topic_filter": "plant/+/+/+/+/vib", "bearing": "slew-4pc-1000"}
    >>> cfg = config_from_dict({"site": "yard1", "sensors": [sensor]},
    ...                        env={"SLEWGUARD_MQTT__PORT": "1884"})
    >>> cfg.mqtt.port
    1884
    >>> try:
    ...     config_from_dict({"site": "yard1", "sensors": [sensor], "mqtt": {"prot": 1}}, env={})
    ... except ConfigError as exc:
    ...     print(exc.errors[0][:60])
    mqtt.prot: Extra inputs are not permitted (allowed: client_i
"""

from __future__ import annotations

import copy
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from paho.mqtt.client import topic_matches_sub
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from slewguard.service.alerts_config import ALERT_STATES, AlertsConfig, WebhookConfig
from slewguard.service.payload import MAX_SAMPLE_RATE_HZ, max_window_bytes
from slewguard.service.redact import redact_url, redact_urls

__all__ = ["ALERT_STATES", "AlertsConfig", "ConfigError", "ServiceConfig", "WebhookConfig",
           "config_from_dict", "load_config"]
from slewguard.models.shipped import SHIPPED_MODELS
from slewguard.signal import kinematics

ENV_PREFIX = "SLEWGUARD_"
# A concrete results topic used to check that no input filter would subscribe to our own output.
_PROBE = "{prefix}/site/asset/bearing/sensor/diag"
# One name per model shipped in the package (models/shipped.py): a new one needs no edit here.
ShippedName = Literal[tuple(SHIPPED_MODELS)]


class ConfigError(ValueError):
    """Invalid configuration; ``errors`` holds one "key.path: message" line per problem."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = errors
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n" + "\n".join(f"  - {e}" for e in errors))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_filter(topic_filter: str, what: str) -> str:
    levels = topic_filter.split("/")
    bad = (not topic_filter or "\0" in topic_filter
           or any(("#" in lv and (lv != "#" or i != len(levels) - 1)) or ("+" in lv and lv != "+")
                  for i, lv in enumerate(levels)))
    if bad:
        raise ValueError(f"{what} {topic_filter!r} is not a valid MQTT topic filter: '+' must fill "
                         "a whole level and '#' must be the whole last level")
    return topic_filter


def _check_topic(topic: str, what: str) -> str:
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise ValueError(f"{what}={topic!r} must be a non-empty topic name without + or #")
    return topic


class TlsConfig(_Strict):
    """TLS towards the broker; ``cert_file`` with ``key_file`` enables a client certificate."""

    ca_file: Path | None = Field(None, description="CA bundle that signed the broker certificate; "
                                 "None uses the system store.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(None, description="Private key (PEM) of cert_file.")
    insecure: bool = Field(False, description="Skip hostname verification (testing only).")

    @model_validator(mode="after")
    def _pairs_and_files(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both for a client "
                             "certificate or neither")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}={str(path)!r} does not exist or is not a file")
        return self


class MqttConfig(_Strict):
    """The broker connection, the subscription and the topics the daemon publishes to."""

    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (8883 is usual for TLS).")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version.")
    client_id: str = Field("slewguard", min_length=1, max_length=128,
                           description="Client id; keep it stable so the persistent session "
                           "(and messages queued while offline) survives restarts.")
    username: str | None = Field(None, description="User name, None for anonymous.")
    password: SecretStr | None = Field(None, description="Password; prefer the environment "
                                       "variable SLEWGUARD_MQTT__PASSWORD to the file.")
    tls: TlsConfig | None = Field(None, description="TLS settings; None for plain TCP.")
    topics: list[str] = Field(["plant/+/+/+/+/vib"], min_length=1,
                              description="Topic filters to subscribe to (+ and # allowed); "
                              "layout plant/<site>/<asset>/<bearing>/<sensor>/vib.")
    shared_group: str | None = Field(None, description="Subscribe as $share/<group>/<filter> so "
                                     "several daemons split the load (each with its own "
                                     "client_id); None for a plain subscription. Each member's "
                                     "status then goes to <status_topic>/<client_id>.")
    shared_takeover: bool = Field(True, description="With shared_group: when a member's status "
                                  "turns offline (its Will after a crash, or its clean stop), "
                                  "connect as that member, unsubscribe its persistent session "
                                  "from the group, take the windows queued or in flight in it "
                                  "through this daemon's pipeline (acked after the outbox stored "
                                  "them) and delete the session. Without it mosquitto keeps "
                                  "routing a share of the windows to the dead member's session "
                                  "until it returns (EMQX until the session expires); see "
                                  "docs/shared_subscriptions.md.")
    shared_takeover_quiet_s: float = Field(2.0, gt=0, le=60, description="Seconds without a "
                                           "window, with every window acked, after which a "
                                           "taken-over session counts as drained and is "
                                           "deleted.")
    qos: Literal[1, 2] = Field(1, description="Subscription QoS; at least 1, because a window "
                               "is acknowledged only once it is in the outbox.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive in seconds.")
    session_expiry_s: int = Field(86_400, ge=0, description="MQTT 5 session expiry in seconds: "
                                  "how long the broker queues windows while the daemon is down. "
                                  "When it runs out mosquitto deletes the queued windows (EMQX "
                                  "gives a shared-subscription member's to the other members): "
                                  "a short expiry keeps a shared group flowing only by losing "
                                  "them; shared_takeover does that without loss.")
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay in seconds.")
    reconnect_max_s: float = Field(60.0, gt=0, description="Longest reconnect delay in seconds.")
    receive_maximum: int = Field(64, ge=1, le=65535, description="Unacknowledged QoS>0 messages "
                                 "the broker may have in flight to the daemon (backpressure).")
    dead_letter_topic: str = Field("slewguard/dead-letter", description="Where undecodable or "
                                   "unknown-sensor messages are republished with a reason.")
    status_topic: str = Field("slewguard/status", description="Retained online/offline status "
                              "(also the last will).")
    results_prefix: str = Field("plant", description="Results go to "
                                "<results_prefix>/<site>/<asset>/<bearing>/<sensor>/diag and the "
                                "retained .../diag/state.")

    @field_validator("protocol", mode="before")
    @classmethod
    def _unquoted_version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value  # YAML reads 5 as int

    @model_validator(mode="after")
    def _topics_consistent(self) -> MqttConfig:
        for f in self.topics:
            _check_filter(f, "filter")
        _check_topic(self.dead_letter_topic, "dead_letter_topic")
        _check_topic(self.status_topic, "status_topic")
        _check_topic(self.results_prefix, "results_prefix")
        group = self.shared_group
        if group is not None and (group == "" or any(c in group for c in "/+#")):
            raise ValueError(f"shared_group={self.shared_group!r} must be a non-empty name "
                             "without '/', '+' or '#'")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_min_s={self.reconnect_min_s} must not exceed "
                             f"reconnect_max_s={self.reconnect_max_s}")
        probe = _PROBE.format(prefix=self.results_prefix)
        own = (probe, probe + "/state", self.dead_letter_topic, self.status_topic,
               self.status_topic + "/member")
        for f in self.topics:
            hit = next((t for t in own if topic_matches_sub(f, t)), None)
            if hit is not None:
                raise ValueError(f"filter {f!r} also matches the daemon's own output {hit!r}: "
                                 "narrow it (e.g. end it in /vib) so results do not loop back")
        return self


class BearingConfig(_Strict):
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


class SensorConfig(_Strict):
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
            _check_filter(self.topic_filter, "topic_filter")
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


class ModelConfig(_Strict):
    """Which classifier to load and where to run it."""

    path: Path | None = Field(None, description="Saved FaultClassifier directory; None loads the "
                              "shipped model named by `shipped`.")
    shipped: ShippedName = Field("default", description="Shipped model when "
                                                "`path` is unset: default (pruned 8.7x) or fast "
                                                "(13.8x, bfloat16 file); both read the evidence "
                                                "stage's text (docs/models.md).")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Torch device.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights "
                                                             "dtype for inference; bfloat16 "
                                                             "pays where the CPU has AVX-512 "
                                                             "BF16 or AMX.")
    runtime: Literal["onnx", "torch"] | None = Field(None, description="Model runtime "
                                                     "(models.runtimes): onnx (ONNX Runtime, "
                                                     "no torch in the process) or torch; None: "
                                                     "onnx where the model directory has "
                                                     "model.onnx and dtype is float32 on the "
                                                     "CPU, else torch.")
    onnx_threads: int | None = Field(1, ge=1, le=256, description="ONNX Runtime intra-op "
                                     "threads; None keeps its default (one per core). 1 for "
                                     "the reason torch_threads gives.")
    torch_threads: int | None = Field(1, ge=1, le=256, description="torch intra-op threads "
                                      "of the inference thread, set at start; None keeps torch's "
                                      "default (one per core). Default 1: inference overlaps the "
                                      "features thread, and torch's default pool spins against "
                                      "it on a small box (docs/benchmarks.md).")

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if self.path is not None and self.shipped != "default":
            raise ValueError(f"path={str(self.path)!r} and shipped={self.shipped!r} both name a "
                             "model: set one of them")
        if self.runtime == "onnx" and (self.dtype != "float32" or self.device == "cuda"):
            raise ValueError(f"runtime='onnx' runs float32 on the CPU, not dtype={self.dtype!r}"
                             f" on device={self.device!r}: set model.dtype float32 and "
                             "model.device cpu, or model.runtime torch")
        return self


class InferenceConfig(_Strict):
    """Micro-batching between the MQTT queue and the model."""

    max_batch: int = Field(16, ge=1, le=1024, description="Most windows per forward pass.")
    max_wait_ms: float = Field(50.0, ge=0, le=10_000, description="Longest wait for a batch to "
                               "fill, in milliseconds.")
    queue_size: int = Field(256, ge=1, description="Decoded windows waiting for inference; when "
                            "full, MQTT acks stop and the broker holds the rest.")
    queue_bytes: int = Field(64 * 2**20, ge=1, description="Payload bytes waiting for "
                             "inference, the queue's bound in memory: past it, MQTT acks stop "
                             "as when queue_size is reached. One message larger than this still "
                             "passes when the queue is empty.")
    signal_threads: int | None = Field(None, ge=1, le=256, description="Threads that compute "
                                       "the windows of a batch (checks, features); None: one "
                                       "per core. Set 1 when several daemons share the cores.")

    @model_validator(mode="after")
    def _queue_holds_batch(self) -> InferenceConfig:
        if self.queue_size < self.max_batch:
            raise ValueError(f"queue_size={self.queue_size} must be >= max_batch="
                             f"{self.max_batch} or batches never fill")
        return self


class EvidenceConfig(_Strict):
    """Rig-invariant defect evidence (signal.evidence) and each bearing's baseline."""

    enabled: bool = Field(True, description="Compute defect-line prominence, the speed "
                          "estimate and the level over the bearing's baseline for every window, "
                          "and the envelope rule's verdict beside the model's. Models of "
                          "template t3 (both shipped ones) read it as their input: false needs "
                          "a t1 model.")
    baseline_windows: int = Field(10, ge=1, le=100_000, description="Windows of each bearing "
                                  "that make its healthy baseline at commissioning.")
    baseline_path: Path | None = Field(None, description="JSON file of the learned baselines; "
                                       "None: baselines.json beside the outbox.")
    line_db: float = Field(12.0, gt=0, le=60, description="Envelope rule: a BPFO or BPFI line "
                           "this many dB over its floor is a race fault.")
    level_db: float = Field(2.5, gt=0, le=60, description="Envelope rule: a level this many dB "
                            "over the baseline without a race line is a rolling-element fault.")
    verdict: Literal["model", "envelope_rule"] = Field(
        "model", description="Whose verdict a result carries: the model's, or the envelope "
        "rule's (on a rig unlike the model's training data; docs/transfer.md).")


class IngestConfig(_Strict):
    """Limits on what the daemon takes from the broker, checked before any decoding."""

    max_payload_bytes: int | None = Field(None, ge=256, le=268_435_455, description="Largest "
                                          "message in bytes; a larger one is dead-lettered "
                                          "(reason too_large) before decoding. None: the "
                                          "largest binary float32 window the sensors can send "
                                          "(60 s at the highest sensors.sample_rate_hz, or at "
                                          "50 kHz when a sensor sets none, plus the header). "
                                          "JSON needs 10-20 bytes a sample, so its windows "
                                          "must be shorter or this raised.")


class OutboxConfig(_Strict):
    """The durable SQLite outbox between diagnosis and the sinks."""

    path: Path = Field(Path("slewguard-outbox.sqlite3"), description="SQLite database file.")
    max_bytes: int = Field(256 * 2**20, ge=2**20, description="Disk quota in bytes; sent rows "
                           "are deleted first when it is reached.")
    when_full: Literal["reject", "drop_oldest"] = Field("reject", description="With only unsent "
                                                        "rows left at the quota: 'reject' new "
                                                        "results (MQTT redelivers later) or "
                                                        "'drop_oldest' unsent ones (counted as "
                                                        "lost).")


class InfluxConfig(_Strict):
    """The InfluxDB v2 write API (VictoriaMetrics speaks it too)."""

    url: str = Field(description="Base URL, e.g. http://127.0.0.1:8086.")
    token: SecretStr | None = Field(None, description="API token; prefer SLEWGUARD_INFLUX__TOKEN.")
    org: str = Field("slewguard", description="Organisation.")
    bucket: str = Field("slewguard", description="Bucket.")
    measurement: str = Field("bearing_diagnosis", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="Measurement name of every point.")
    batch_size: int = Field(500, ge=1, le=10_000, description="Results per write request.")
    flush_interval_s: float = Field(1.0, gt=0, description="Longest idle wait of the forwarder; "
                                    "newly stored results wake it at once.")
    timeout_s: float = Field(10.0, gt=0, description="HTTP timeout per write in seconds.")
    retry_min_s: float = Field(0.5, gt=0, description="First backoff after a retryable error.")
    retry_max_s: float = Field(60.0, gt=0, description="Longest backoff between retries.")

    @model_validator(mode="after")
    def _url_and_backoff(self) -> InfluxConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url={redact_url(self.url)!r} must start with http:// or https://")
        if self.retry_min_s > self.retry_max_s:
            raise ValueError(f"retry_min_s={self.retry_min_s} must not exceed "
                             f"retry_max_s={self.retry_max_s}")
        return self


class HttpConfig(_Strict):
    """The HTTP server for /metrics, /healthz and /readyz."""

    host: str = Field("127.0.0.1", description="Bind address; 0.0.0.0 exposes it to the network.")
    port: int = Field(9108, ge=0, le=65535, description="TCP port; 0 picks a free one (tests).")


class LoggingConfig(_Strict):
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="One line of text or JSON per "
                                            "record.")
    status_interval_s: float = Field(300.0, ge=0, description="Seconds between the one-line "
                                     "INFO status (windows/s, rejected, queue, outbox depth "
                                     "and age, dead letters, broker); 0 turns it off.")


class ServiceConfig(_Strict):
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
    influx: InfluxConfig | None = Field(None, description="InfluxDB sink; None disables it.")
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, description="Defect "
                                     "evidence, speed estimate and bearing baselines.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="Metrics and health HTTP.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Bearing-state voting, "
                                 "state gauges and alert webhooks.")

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


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> ServiceConfig:
    """Read a YAML file, apply ``SLEWGUARD_*`` overrides from ``env`` (default: os.environ).

    Raises ``ConfigError`` naming the file and every bad key path.

    Example:
        >>> load_config("deploy/slewguard.example.yaml", env={}).mqtt.qos
        1
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc}"], str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}{problem}"], str(path)) from None
    return config_from_dict({} if data is None else data, env, source=str(path))


def config_from_dict(data: Any, env: Mapping[str, str] | None = None,
                     source: str = "") -> ServiceConfig:
    """Validate an already-parsed mapping (plus env overrides) into a ``ServiceConfig``.

    Example:
        >>> config_from_dict({"site": "y", "sensors": [{"sensor_id": "s1", "bearing":
        ...                   "cwru-6205"}]}, env={}).sensors[0].rpm_source
        'payload'
    """
    if not isinstance(data, dict):
        raise ConfigError([f"the top level must be a mapping of sections, got "
                           f"{type(data).__name__}"], source)
    env = os.environ if env is None else env
    try:
        merged, from_env = _apply_env(data, env)
    except ConfigError as exc:
        raise ConfigError(exc.errors, source) from None
    try:
        return ServiceConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError([_describe(e, from_env) for e in exc.errors()], source) from None


def _apply_env(data: dict, env: Mapping[str, str]) -> tuple[dict, dict[tuple, str]]:
    """Copy of ``data`` with overrides; also maps each overridden key path to its variable."""
    merged = copy.deepcopy(data)
    from_env: dict[tuple, str] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in var[len(ENV_PREFIX):].split("__")]
        if parts[0] not in ServiceConfig.model_fields or "" in parts:
            continue  # SLEWGUARD_CWRU_DIR and friends belong to other tools
        node: Any = merged
        for i, part in enumerate(parts[:-1]):
            key: Any = int(part) if isinstance(node, list) and part.isdigit() else part
            if isinstance(node, list) and not (isinstance(key, int) and key < len(node)):
                raise ConfigError([f"{'.'.join(parts[:i + 1])}: {var} indexes past the "
                                   f"{len(node)} entries in the file"])
            if isinstance(node, dict) and not isinstance(node.get(key), dict | list):
                node[key] = {}
            node = node[key]
        node[parts[-1]] = _env_value(var, env[var], _annotation_at(tuple(parts)))
        from_env[tuple(parts)] = var
    return merged, from_env


def _env_value(var: str, value: str, annotation: Any) -> Any:
    """The override for a field of type ``annotation``: verbatim text unless the field is a
    list or mapping (then flow YAML, which includes JSON); ``null``/``~`` clear a field that
    takes None and no text. Secrets are text, so a password like ``[x`` or ``null`` stays
    itself; a parse error names ``var`` but never echoes ``value``, which may be a secret.

    Example:
        >>> _env_value("SLEWGUARD_MQTT__TOPICS", "[a/+/vib, b/#]", list[str])
        ['a/+/vib', 'b/#']
        >>> _env_value("SLEWGUARD_MQTT__PASSWORD", "null", SecretStr | None)
        'null'
    """
    if _is_structured(annotation):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise ConfigError([f"{var}: not valid YAML/JSON{where}; give a flow list like "
                               "[a, b] or a mapping like {key: value}, quoting items that "
                               "hold ',', ':', '[' or '{'"]) from None
    if value.strip() in ("null", "~") and _takes_none_but_no_text(annotation):
        return None
    return value


def _is_structured(annotation: Any) -> bool:
    """True for list, tuple, set and mapping types and for sub-models (also inside Optional)."""
    if _model_in(annotation) is not None:
        return True
    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    containers = (list, tuple, set, frozenset, dict, Mapping, typing.Sequence)
    return any(typing.get_origin(a) in containers or a in containers for a in args)


def _takes_none_but_no_text(annotation: Any) -> bool:
    """True for ``int | None`` and the like, where "null" cannot be a meant value."""
    if not _is_union(annotation):
        return False
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    texts = (str, SecretStr, Path)
    return len(args) < len(typing.get_args(annotation)) and not any(
        a in texts or typing.get_origin(a) is Literal for a in args)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _describe(error: Mapping[str, Any], from_env: dict[tuple, str]) -> str:
    """One "key.path: message" line for a pydantic error dict."""
    loc = tuple(str(p) for p in error["loc"])
    msg = redact_urls(str(error["msg"]).removeprefix("Value error, "))
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        if allowed:
            msg += f" (allowed: {', '.join(sorted(allowed))})"
    elif error["type"] != "missing" and not isinstance(error.get("input"), dict | list) and (
            not _may_be_secret(loc)):
        msg += f" (got {redact_urls(repr(error.get('input')))})"
    var = from_env.get(loc)
    if var:
        msg += f" (from ${var})"
    return f"{'.'.join(loc) or '(top level)'}: {msg}"


def _may_be_secret(loc: tuple[str, ...]) -> bool:
    """True for passwords, tokens and HTTP headers (Authorization), whose values are not shown."""
    annotation = _annotation_at(loc)
    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    return bool(set(loc) & {"password", "token", "headers"}) or SecretStr in args


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    """Field names of the model found by walking ``loc`` down from ServiceConfig."""
    model = _model_in(_annotation_at(loc))
    return list(model.model_fields) if model is not None else []


def _annotation_at(loc: tuple[str, ...]) -> Any:
    """The type annotation of the field at key path ``loc``, None where no field is.

    Example:
        >>> _annotation_at(("alerts", "webhooks", "0", "headers"))
        dict[str, str]
    """
    annotation: Any = ServiceConfig
    for part in loc:
        model = _model_in(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if model is not None:
            field = model.model_fields.get(part)
            annotation = field.annotation if field is not None else None
        elif typing.get_origin(annotation) in (dict, Mapping) and len(args) == 2:
            annotation = args[1]
        elif part.isdigit() and typing.get_origin(annotation) in (list, tuple):
            annotation = args[0] if args else None
        else:
            return None
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class in ``annotation`` (itself, or inside Optional / Union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if _is_union(annotation):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None
