"""Dead letters: the JSON envelope and the publisher.

Example:
    >>> from slewguard.service.ingest import Inbound
    >>> m = Inbound("plant/a/b/c/d/vib", b"junk", 1, 1, 0.0, 1)
    >>> json.loads(dead_letter_envelope(m, "bad_magic", "no SLGW"))["reason"]
    'bad_magic'
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from slewguard.service.ingest import Inbound
from slewguard.service.metrics import Metrics

KEEP_HEAD_BYTES = 4096  # of a message over the size limit, only this much is republished


def dead_letter_envelope(inbound: Inbound, reason: str, detail: str,
                         max_payload_bytes: int | None = None) -> bytes:
    """The JSON dead-letter body: reason, detail, source topic, size and the original bytes
    (base64); of a message over ``max_payload_bytes`` only the first ``KEEP_HEAD_BYTES``
    (``payload_truncated``), so an oversize message is not copied and republished whole.

    Example:
        >>> m = Inbound("plant/a/b/c/d/vib", b"junk", 1, 1, 0.0, 1)
        >>> json.loads(dead_letter_envelope(m, "bad_magic", "no SLGW"))["payload_b64"]
        'anVuaw=='
    """
    size = len(inbound.payload)
    truncated = max_payload_bytes is not None and size > max_payload_bytes
    kept = inbound.payload[:KEEP_HEAD_BYTES] if truncated else inbound.payload
    return json.dumps({
        "reason": reason, "detail": detail[:500], "topic": inbound.topic,
        "payload_b64": base64.b64encode(kept).decode(), "payload_bytes": size,
        "payload_truncated": truncated, "received_at": time.time(),
    }).encode()


class DeadLetters:
    """Publishes rejected messages to ``topic`` (QoS 1) through ``publish`` (Ingest.publish)."""

    def __init__(self, topic: str, publish: Callable[..., Any], metrics: Metrics,
                 user_properties: bool, max_payload_bytes: int | None = None) -> None:
        self.topic = topic
        self.max_payload_bytes = max_payload_bytes
        self.publish = publish
        self.metrics = metrics
        self.user_properties = user_properties

    def send(self, inbound: Inbound, reason: str, detail: str) -> None:
        """Publish one dead letter and count it."""
        properties = None
        if self.user_properties:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = [("reason", reason), ("source_topic", inbound.topic)]
        envelope = dead_letter_envelope(inbound, reason, detail, self.max_payload_bytes)
        self.publish(self.topic, envelope, qos=1, properties=properties)
        self.metrics.dead_letters_total.labels(reason=reason).inc()
