"""The ``mqtt`` section: broker connection, TLS, subscription and the topics the daemon publishes.

``check_filter`` and ``check_topic`` also serve the sensors section (``topic_filter``).

Example:
    >>> MqttConfig(port=8883, tls={}).tls.insecure
    False
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from paho.mqtt.client import topic_matches_sub
from pydantic import Field, SecretStr, field_validator, model_validator

from slewguard.service.config.base import StrictModel

# A concrete results topic used to check that no input filter would subscribe to our own output.
_PROBE = "{prefix}/site/asset/bearing/sensor/diag"


def check_filter(topic_filter: str, what: str) -> str:
    levels = topic_filter.split("/")
    bad = (not topic_filter or "\0" in topic_filter
           or any(("#" in lv and (lv != "#" or i != len(levels) - 1)) or ("+" in lv and lv != "+")
                  for i, lv in enumerate(levels)))
    if bad:
        raise ValueError(f"{what} {topic_filter!r} is not a valid MQTT topic filter: '+' must fill "
                         "a whole level and '#' must be the whole last level")
    return topic_filter


def check_topic(topic: str, what: str) -> str:
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise ValueError(f"{what}={topic!r} must be a non-empty topic name without + or #")
    return topic


class TlsConfig(StrictModel):
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


class MqttConfig(StrictModel):
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
    shared_takeover_grace_s: float = Field(2.0, gt=0, le=60, description="Seconds a member's "
                                           "offline status must stand, with this daemon "
                                           "connected throughout, before its session is taken "
                                           "over. A broker restart sends every member's Will "
                                           "and leaves it retained, and the members come back "
                                           "within about one reconnect delay of each other: "
                                           "taking over at once would disconnect a member that "
                                           "has just reconnected.")
    qos: Literal[1, 2] = Field(1, description="Subscription QoS; at least 1, because a window "
                               "is acknowledged only once it is in the outbox.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive in seconds.")
    session_expiry_s: int = Field(86_400, ge=0, description="MQTT 5 session expiry in seconds: "
                                  "how long the broker queues windows while the daemon is down. "
                                  "When it runs out mosquitto deletes the queued windows (EMQX "
                                  "gives a shared-subscription member's to the other members): "
                                  "a short expiry keeps a shared group flowing only by losing "
                                  "them; shared_takeover does that without loss.")
    reconnect_min_s: float = Field(0.25, gt=0, description="First reconnect delay in seconds "
                                   "(doubling up to reconnect_max_s). Short: a shared "
                                   "subscription, which mosquitto forgets on a restart, is "
                                   "back sooner.")
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
            check_filter(f, "filter")
        check_topic(self.dead_letter_topic, "dead_letter_topic")
        check_topic(self.status_topic, "status_topic")
        check_topic(self.results_prefix, "results_prefix")
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
