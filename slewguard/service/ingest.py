"""MQTT ingest: a paho-mqtt 2.x client with a persistent session, manual acks and a status topic.

Guarantees, and how:
- At-least-once: QoS 1, persistent session (v5: ``clean_start=False`` + SessionExpiryInterval;
  v3.1.1: fixed client id + ``clean_session=False``) and ``manual_ack``: a message is acknowledged
  by ``ack()`` only after the pipeline has stored its result (or dead-lettered it). A crash before
  that and the broker redelivers; the outbox is idempotent on ``Result.key()``.
- Bounded memory: the broker should send at most ``receive_maximum`` unacknowledged messages
  (MQTT 5 Receive Maximum; for v3.1.1 the broker's ``max_inflight_messages``), but mosquitto
  2.0.11 was seen sending bursts past it once acks flow. The hard bound is the handler (the
  pipeline's ``submit``): it blocks paho's network thread while the queue is full, so nothing
  more is read from the socket and the broker keeps the backlog.
- Acks never cross connections: after a reconnect the broker resends unacked messages with the
  same packet ids, so an ack for a message from an earlier connection is skipped (its resent copy
  is acked instead) rather than acknowledging whatever now holds that packet id.
- Status: a retained ``{"state": "online", ...}`` on connect, the same topic with ``"offline"`` as
  Last Will and on a clean stop.
- Failed connects are never silent: the client comes from ``mqtt_client.build_client``, whose
  ``ConnectFailures`` logs each distinct cause once, reminds while it lasts and counts them.

Example:
    >>> ingest = Ingest(config.mqtt, Metrics(), handler=pipeline.submit)   # doctest: +SKIP
    >>> ingest.start(); ...; ingest.stop()                                 # doctest: +SKIP
    >>> json.loads(status_payload("online", "edge-1", model="m"))  # retained on status_topic
    {'state': 'online', 'client_id': 'edge-1', 'model': 'm'}
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from slewguard.service.metrics import Metrics
from slewguard.service.mqtt_client import (
    CONNECT_LOG_EVERY_S,
    ConnectFailures,
    build_client,
    session_properties,
    speaks_v5,
)

if TYPE_CHECKING:
    from slewguard.service.config.mqtt import MqttConfig
    from slewguard.service.takeover import Takeovers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inbound:
    """One received MQTT message, as the pipeline sees it.

    ``received_s`` is ``time.monotonic()`` at receipt (end-to-end latency starts here);
    ``generation`` counts connections, so a late ack from an old connection can be recognised;
    ``session`` is the client id of a shared-subscription peer whose session this daemon took
    over (takeover.py), "" for the daemon's own.
    """

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_s: float
    generation: int
    session: str = ""


def subscription_topics(filters: list[str], shared_group: str | None) -> list[str]:
    """The topics to SUBSCRIBE to: each filter, under ``$share/<group>/`` when a group is set.

    Example:
        >>> subscription_topics(["plant/+/+/+/+/vib"], "edge")
        ['$share/edge/plant/+/+/+/+/vib']
    """
    if shared_group is None:
        return list(filters)
    return [f"$share/{shared_group}/{f}" for f in filters]


def member_status_topic(status_topic: str, client_id: str, shared_group: str | None) -> str:
    """Where this daemon's retained status goes: ``<status_topic>/<client_id>`` in a shared group
    (each member's own, so one member's Will does not overwrite another's "online", and peers see
    which member went down), ``status_topic`` otherwise.

    Example:
        >>> member_status_topic("slewguard/status", "edge-a", "g")
        'slewguard/status/edge-a'
    """
    return status_topic if shared_group is None else f"{status_topic}/{client_id}"


def status_payload(state: str, client_id: str, **extra: str) -> bytes:
    """The retained status message, e.g. ``{"state": "online", "client_id": ..., "model": ...}``.

    Example:
        >>> json.loads(status_payload("offline", "edge-1"))["state"]
        'offline'
    """
    return json.dumps({"state": state, "client_id": client_id, **extra}).encode()


def default_client_id() -> str:
    """``slewguard-<hostname>``: fixed across restarts, as a persistent session needs."""
    return f"slewguard-{socket.gethostname()}"


class Ingest:
    """Owns the MQTT connection; hands each message to ``handler`` and acks when told.

    ``handler(inbound)`` runs on paho's network thread and may block (backpressure).
    ``status_extra`` (e.g. version and model) joins the retained "online" message.
    """

    def __init__(self, config: MqttConfig, metrics: Metrics,
                 handler: Callable[[Inbound], None],
                 status_extra: dict[str, str] | None = None,
                 failure_log_every_s: float = CONNECT_LOG_EVERY_S) -> None:
        self.config = config
        self.metrics = metrics
        self.handler = handler
        self.client_id = config.client_id or default_client_id()
        self.status_topic = member_status_topic(config.status_topic, self.client_id,
                                                config.shared_group)
        self.status_extra = dict(status_extra or {})
        self.client = build_client(config, self.client_id)
        self.failures = ConnectFailures(config, "ingest", metrics, failure_log_every_s)
        self.client.on_connect_error = self.failures.failed
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._lock = threading.Lock()
        self._generation = 0
        self._inflight: set[int] = set()
        self.max_inflight_seen = 0
        self._paused = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client.will_set(self.status_topic, status_payload("offline", self.client_id),
                             qos=1, retain=True)
        self.takeovers: Takeovers | None = None
        if self.takes_over:
            from slewguard.service.takeover import Takeovers  # takeover.py builds on this module

            self.takeovers = Takeovers(self)
        if self.takeovers is not None:
            self.client.message_callback_add(self.peer_status_filter, self.takeovers.on_status)

    @property
    def takes_over(self) -> bool:
        """Whether this member takes over the sessions of shared-subscription peers gone down."""
        return self.config.shared_group is not None and bool(self.config.shared_takeover)

    @property
    def peer_status_filter(self) -> str:
        """The retained statuses of every member of the shared group (ours included)."""
        return f"{self.config.status_topic}/+"

    def start(self) -> None:
        """Connect in the background (retrying with backoff until the broker answers)."""
        v5 = speaks_v5(self.config)
        self.client.connect_async(
            self.config.host, int(self.config.port), keepalive=int(self.config.keepalive_s),
            clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=session_properties(self.config))
        self.client.loop_start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish "offline" (a clean disconnect does not fire the Will), disconnect, stop."""
        if self.takeovers is not None:
            self.takeovers.stop(timeout_s)
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, status_payload("offline", self.client_id),
                                       qos=1, retain=True)
            _wait_published(info, timeout_s)
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        self.metrics.mqtt_connected.set(0)

    def pause(self) -> None:
        """Stop handing messages to the handler; they stay unacked and the broker keeps them.

        (Unsubscribing instead would drop the subscription from the persistent session, and
        with it every window published while the daemon is down.)
        """
        self._paused.set()

    def ack(self, message: Inbound) -> bool:
        """Acknowledge ``message`` if it came on the current connection; returns whether it did."""
        if message.session:
            return self.takeovers is not None and self.takeovers.ack(message)
        with self._lock:
            if message.generation != self._generation or message.mid not in self._inflight:
                return False  # the broker resends it on this connection; that copy gets the ack
            self._inflight.discard(message.mid)
            self.metrics.mqtt_inflight_messages.set(len(self._inflight))
        if message.qos > 0:
            self.client.ack(message.mid, message.qos)
        return True

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> mqtt.MQTTMessageInfo:
        """Publish on the ingest connection (dead letters; results go over their own connection,
        ``mqtt_client.publisher_client``); paho queues while offline."""
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    @property
    def is_v5(self) -> bool:
        """Whether this connection speaks MQTT 5 (user properties are available)."""
        return speaks_v5(self.config)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%s refused the connection: %s", self.config.host,
                      self.config.port, reason_code)
            return
        with self._lock:
            self._generation += 1
            self._inflight.clear()
        self.metrics.mqtt_connected.set(1)
        self.metrics.mqtt_connects_total.inc()
        self.metrics.mqtt_inflight_messages.set(0)
        log.info("connected to %s:%s as %s (session present: %s, after %d failed attempts)",
                 self.config.host, self.config.port, self.client_id, flags.session_present,
                 self.failures.connected())
        self._subscribe(client)
        client.publish(self.status_topic,
                       status_payload("online", self.client_id, **self.status_extra),
                       qos=1, retain=True)
        self.connected.set()

    def _subscribe(self, client: mqtt.Client) -> None:
        qos = int(self.config.qos)
        topics = subscription_topics(list(self.config.topics), self.config.shared_group)
        if self.takeovers is not None:
            topics.append(self.peer_status_filter)  # plain: every member sees every status
        if self.is_v5:
            client.subscribe([(t, SubscribeOptions(qos=qos)) for t in topics])
        else:
            client.subscribe([(t, qos) for t in topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[Any], properties: Any) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused subscriptions: %s", failed)
        else:
            self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason_code: Any, properties: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.metrics.mqtt_connected.set(0)
        if self.takeovers is not None:
            self.takeovers.on_disconnect()
        if reason_code != 0:
            log.warning("disconnected from broker (%s); paho reconnects with backoff", reason_code)

    def deliver(self, inbound: Inbound) -> bool:
        """Hand a window from a taken-over session to the handler; False while paused."""
        if self._paused.is_set():
            return False  # not acked: the session is kept for the peer
        self.metrics.windows_received_total.inc()
        self.handler(inbound)
        return True

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._paused.is_set():
            return  # not acked: redelivered to the next session
        with self._lock:
            inbound = Inbound(message.topic, bytes(message.payload), message.mid, message.qos,
                              time.monotonic(), self._generation)
            if message.qos > 0:
                self._inflight.add(message.mid)
            self.max_inflight_seen = max(self.max_inflight_seen, len(self._inflight))
            self.metrics.mqtt_inflight_messages.set(len(self._inflight))
        self.metrics.windows_received_total.inc()
        self.handler(inbound)


def _wait_published(info: mqtt.MQTTMessageInfo, timeout_s: float) -> None:
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError) as exc:  # not connected / queue full: nothing to wait for
        log.debug("status publish not confirmed: %s", exc)
