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
- Failed connects are never silent: paho swallows the exception of a failed attempt (refused,
  timed out, TLS handshake), so ``_Client`` hands it to ``ConnectFailures``, which logs each
  distinct cause once (TLS at ERROR with host, port and ``mqtt.tls.ca_file``; an unreachable
  broker at WARNING with host:port and the retry interval), a reminder every
  ``CONNECT_LOG_EVERY_S`` while it lasts, and counts ``slewguard_mqtt_connect_failures_total``.

Example:
    >>> ingest = Ingest(config.mqtt, Metrics(), handler=pipeline.submit)   # doctest: +SKIP
    >>> ingest.start(); ...; ingest.stop()                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from slewguard.service.metrics import Metrics

if TYPE_CHECKING:
    from slewguard.service.config.mqtt import MqttConfig

log = logging.getLogger(__name__)
CONNECT_LOG_EVERY_S = 60.0  # reminder interval while the broker stays unreachable
CONNECT_FAILURE_REASONS = ("tls", "refused", "timeout", "dns", "other")
# OpenSSL verify codes: which configured file the operator has to fix.
_UNTRUSTED_CODES = {2, 18, 19, 20, 21}  # no issuer / self-signed / local issuer / leaf unverifiable
_EXPIRED_CODE, _NOT_YET_VALID_CODE, _HOSTNAME_CODE = 10, 9, 62


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


def describe_connect_error(exc: OSError, config: MqttConfig) -> tuple[str, str]:
    """(reason label, one-line cause with the fix) of a failed connect attempt to the broker.

    Example:
        >>> cfg = type("C", (), {"host": "h", "port": 1883, "tls": None})()
        >>> describe_connect_error(ConnectionRefusedError(111, "Connection refused"), cfg)[0]
        'refused'
    """
    where = f"{config.host}:{config.port}"
    if isinstance(exc, ssl.SSLError):
        ca_file = config.tls.ca_file if config.tls is not None else None
        ca = f"mqtt.tls.ca_file={str(ca_file) if ca_file else 'None (system store)'}"
        return "tls", f"TLS handshake with broker {where} failed ({ca}): {_tls_cause(exc, config)}"
    if isinstance(exc, ConnectionRefusedError):
        reason = "refused"
    elif isinstance(exc, TimeoutError):
        reason = "timeout"
    elif isinstance(exc, socket.gaierror):
        reason = "dns"
    else:
        reason = "other"
    return reason, (f"cannot connect to broker {where} ({type(exc).__name__}: {exc}): is it "
                    "running and are mqtt.host/mqtt.port right?")


def _tls_cause(exc: ssl.SSLError, config: MqttConfig) -> str:
    code = getattr(exc, "verify_code", None)
    said = getattr(exc, "verify_message", None) or exc.reason or str(exc)
    if code in _UNTRUSTED_CODES:
        return (f"{said}: the broker's certificate is not signed by that CA; set "
                "mqtt.tls.ca_file to the CA that signed it")
    if code in (_EXPIRED_CODE, _NOT_YET_VALID_CODE):
        return (f"{said}: the broker's certificate is outside its validity dates; renew it "
                "on the broker (or check this machine's clock)")
    if code == _HOSTNAME_CODE:
        return (f"{said}: connect by a name the certificate lists (mqtt.host={config.host!r}) "
                "or reissue it with that name")
    return f"{said}: is port {config.port} a TLS listener, and do both sides share a TLS version?"


class ConnectFailures:
    """Logs failed connect attempts: each distinct cause once, then a reminder every
    ``every_s`` while they go on; counts them by reason in ``metrics`` (when given).

    Example:
        >>> cfg = type("C", (), {"host": "h", "port": 1, "tls": None, "reconnect_min_s": 1,
        ...                      "reconnect_max_s": 60})()
        >>> failures = ConnectFailures(cfg, "ingest")
        >>> failures.failed(ConnectionRefusedError(111, "refused"))   # logs a warning
        >>> failures.attempts
        1
    """

    def __init__(self, config: MqttConfig, role: str, metrics: Metrics | None = None,
                 every_s: float = CONNECT_LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.role = role
        self.metrics = metrics
        self.every_s = every_s
        self.clock = clock
        self.attempts = 0
        self._seen: set[str] = set()
        self._first_s = 0.0
        self._last_log_s = 0.0

    def failed(self, exc: OSError) -> None:
        """Record one failed attempt (called on paho's network thread)."""
        reason, cause = describe_connect_error(exc, self.config)
        now = self.clock()
        if self.attempts == 0:
            self._first_s = now
        self.attempts += 1
        if self.metrics is not None:
            self.metrics.mqtt_connect_failures_total.labels(reason=reason).inc()
        retry = (f"retrying with backoff from {self.config.reconnect_min_s:g} s to "
                 f"{self.config.reconnect_max_s:g} s (mqtt.reconnect_min_s, "
                 "mqtt.reconnect_max_s)")
        if cause not in self._seen:
            self._seen.add(cause)
            self._last_log_s = now
            level = logging.ERROR if reason == "tls" else logging.WARNING
            log.log(level, "%s connection: %s; %s", self.role, cause, retry)
        elif now - self._last_log_s >= self.every_s:
            self._last_log_s = now
            log.warning("%s connection: still not connected to %s:%s after %d attempts in "
                        "%.0f s (last: %s); %s", self.role, self.config.host, self.config.port,
                        self.attempts, now - self._first_s, cause, retry)

    def connected(self) -> int:
        """Reset on a successful connect; returns the failed attempts before it."""
        attempts, self.attempts = self.attempts, 0
        self._seen.clear()
        return attempts


class _Client(mqtt.Client):
    """paho's client, except that a failed connect attempt reports its exception.

    paho's loop catches the OSError of a failed (re)connect (refused, timed out, TLS
    handshake) and calls ``on_connect_fail`` without it, so nothing could say why.
    """

    on_connect_error: Callable[[OSError], None] | None = None

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            if self.on_connect_error is not None:
                self.on_connect_error(exc)
            raise


def _is_v5(config: MqttConfig) -> bool:
    return str(config.protocol) == "5"


def build_client(config: MqttConfig, client_id: str, session: bool = True,
                 reconnect: bool = True) -> _Client:
    """A paho client for ``config`` (an MqttConfig): protocol, auth, TLS, backoff; with
    ``session`` a persistent v3.1.1 session and manual acks (v5 sessions are set at connect);
    without ``reconnect`` the network loop ends at the first disconnect."""
    v5 = _is_v5(config)
    client = _Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not session, manual_ack=session,
        reconnect_on_failure=reconnect)
    if config.username:
        password = config.password.get_secret_value() if config.password else None
        client.username_pw_set(config.username, password)
    tls = config.tls
    if tls is not None:
        client.tls_set(ca_certs=_path(tls.ca_file), certfile=_path(tls.cert_file),
                       keyfile=_path(tls.key_file), cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(bool(tls.insecure))
    # paho's delays are plain seconds (typed int, used as floats): sub-second ones shorten the
    # gap after a broker restart, when a shared subscription has to be made again.
    client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)  # type: ignore[arg-type]
    return client


def publisher_client(config: MqttConfig, client_id: str) -> mqtt.Client:
    """A second, publish-only connection (clean session) for results, started in the background.

    Results must not share the ingest connection: when the pipeline queue is full, paho's
    network thread waits inside ``on_message`` and writes nothing, so a results sink on that
    connection could not drain the outbox that the pipeline waits on.

    Example:
        >>> client = publisher_client(config.mqtt, "slewguard-results")   # doctest: +SKIP
    """
    client = build_client(config, client_id, session=False)
    failures = ConnectFailures(config, "results")
    client.on_connect_error = failures.failed
    where = f"{config.host}:{config.port}"

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                   properties: Any) -> None:
        if reason_code.is_failure:
            log.error("results connection: broker %s refused the connection: %s", where,
                      reason_code)
        else:
            log.info("results connection: connected to %s as %s (after %d failed attempts)",
                     where, client_id, failures.connected())

    def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                      properties: Any) -> None:
        if reason_code != 0:  # 0: our own disconnect() at shutdown
            log.warning("results connection: disconnected from %s (%s); results wait in the "
                        "outbox while paho reconnects with backoff", where, reason_code)

    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    client.connect_async(config.host, int(config.port), keepalive=int(config.keepalive_s))
    client.loop_start()
    return client


def session_properties(config: MqttConfig) -> Properties | None:
    """CONNECT properties of a persistent MQTT 5 session (None on 3.1.1): session expiry and
    receive maximum."""
    if not _is_v5(config):
        return None
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = int(config.session_expiry_s)
    properties.ReceiveMaximum = int(config.receive_maximum)
    return properties


def _path(value: Any) -> str | None:
    return None if value is None else str(value)


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
        self.takeovers: Any = None
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
        v5 = _is_v5(self.config)
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
        """Publish on the ingest connection (dead letters; results go over ``publisher_client``'s
        own connection); paho queues while offline."""
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    @property
    def is_v5(self) -> bool:
        """Whether this connection speaks MQTT 5 (user properties are available)."""
        return _is_v5(self.config)

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
