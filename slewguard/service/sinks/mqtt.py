"""MQTT results sink: each result as JSON on ``<prefix>/<site>/<asset>/<bearing>/<sensor>/diag``
(QoS 1) and retained on ``.../diag/state`` so a late subscriber sees each sensor's latest verdict.

It publishes on the paho client it is given, connected and loop-running: in the daemon the
results connection (``mqtt_client.publisher_client``, ``SinkContext.results_client``), not the
ingest one; ``build`` makes one, always (section ``mqtt``: ``results_prefix``). ``write``
returns only after the broker acknowledged every publish (PUBACK), so the outbox marks nothing
sent that the broker did not take. Delivery on the results topic is at-least-once: consumers
deduplicate by (topic, start_ns), i.e. ``Result.key()``; the retained state is idempotent.

Example:
    >>> MqttResultSink(client=None, prefix="plant").name
    'mqtt'
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from slewguard.service.result import Result, diag_topic
from slewguard.service.sinks import RetryableSinkError, Sink

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from slewguard.service.sinks.registry import SinkContext


def build(context: SinkContext) -> list[Sink]:
    """The results publisher on ``context.results_client`` under ``mqtt.results_prefix``."""
    return [MqttResultSink(context.results_client, context.config.mqtt.results_prefix)]


class MqttResultSink:
    """Publishes results with a paho ``Client`` passed in (created and connected by the app)."""

    name = "mqtt"

    def __init__(self, client: mqtt.Client, prefix: str, qos: int = 1,
                 timeout_s: float = 10.0) -> None:
        if qos not in (1, 2):
            raise ValueError(f"qos={qos} must be 1 or 2: results must survive a lost packet")
        self.client, self.prefix, self.qos, self.timeout_s = client, prefix, qos, timeout_s

    def write(self, results: Sequence[Result]) -> None:
        """Publish every result (diag + retained state) and wait for the broker's acks."""
        if not results:
            return
        if not self.client.is_connected():
            raise RetryableSinkError("disconnected", "MQTT client is not connected to the broker")
        infos = []
        for r in results:
            topic, body = diag_topic(self.prefix, r), r.to_json()
            infos.append(self.client.publish(topic, body, qos=self.qos))
            infos.append(self.client.publish(topic + "/state", body, qos=self.qos, retain=True))
        deadline = time.monotonic() + self.timeout_s
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                published = info.is_published()
            except (RuntimeError, ValueError) as exc:
                raise RetryableSinkError("publish_failed", str(exc)) from exc
            if not published:
                raise RetryableSinkError("timeout", f"broker did not acknowledge {len(infos)} "
                                         f"publishes within {self.timeout_s} s")
