"""Dead letters: the JSON envelope and the publisher (moved out of pipeline.py, re-exported there).

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


def dead_letter_envelope(inbound: Inbound, reason: str, detail: str) -> bytes:
    """The JSON dead-letter body: reason, detail, source topic and the original bytes (base64).

    Example:
        >>> m = Inbound("plant/a/b/c/d/vib", b"junk", 1, 1, 0.0, 1)
        >>> json.loads(dead_letter_envelope(m, "bad_magic", "no SLGW"))["payload_b64"]
        'anVuaw=='
    """
    return json.dumps({
        "reason": reason, "detail": detail[:500], "topic": inbound.topic,
        "payload_b64": base64.b64encode(inbound.payload).decode(), "received_at": time.time(),
    }).encode()



class DeadLetters:
    """Publishes rejected messages to ``topic`` (QoS 1) through ``publish`` (Ingest.publish)."""

    def __init__(self, topic: str, publish: Callable[..., Any], metrics: Metrics,
                 user_properties: bool) -> None:
        self.topic = topic
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
        self.publish(self.topic, dead_letter_envelope(inbound, reason, detail), qos=1,
                     properties=properties)
        self.metrics.dead_letters_total.labels(reason=reason).inc()
