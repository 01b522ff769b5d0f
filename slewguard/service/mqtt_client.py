"""The daemon's MQTT connections to the broker: paho clients built from ``MqttConfig``, the
results connection, and failed connects that say why.

- ``build_client``: a paho-mqtt 2.x client with the configured protocol, login, TLS and reconnect
  backoff; with ``session`` a persistent v3.1.1 session and manual acks (the ingest's and a
  takeover's; MQTT 5 sessions are set at connect, ``session_properties``).
- ``publisher_client``: the publish-only results connection (clean session), apart from the
  ingest one, so a full pipeline never stops the outbox from draining.
- Failed connects are never silent: paho swallows the exception of a failed attempt (refused,
  timed out, TLS handshake), so ``_Client`` hands it to ``ConnectFailures``, which logs each
  distinct cause once (TLS at ERROR with host, port and ``mqtt.tls.ca_file``; an unreachable
  broker at WARNING with host:port and the retry interval), a reminder every
  ``CONNECT_LOG_EVERY_S`` while it lasts, and counts ``slewguard_mqtt_connect_failures_total``.

The log lines keep the logger ``slewguard.service.ingest`` they were written under before this
module was split from ``ingest``.

Example:
    >>> from slewguard.service.config.mqtt import MqttConfig
    >>> config = MqttConfig(host="broker.local", port=8883)
    >>> describe_connect_error(TimeoutError("timed out"), config)[0]
    'timeout'
    >>> session_properties(config).ReceiveMaximum == config.receive_maximum  # MQTT 5
    True
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    from slewguard.service.config.mqtt import MqttConfig
    from slewguard.service.metrics import Metrics

log = logging.getLogger("slewguard.service.ingest")  # the ingest's: its log lines keep it
CONNECT_LOG_EVERY_S = 60.0  # reminder interval while the broker stays unreachable
CONNECT_FAILURE_REASONS = ("tls", "refused", "timeout", "dns", "other")
# OpenSSL verify codes: which configured file the operator has to fix.
_UNTRUSTED_CODES = {2, 18, 19, 20, 21}  # no issuer / self-signed / local issuer / leaf unverifiable
_EXPIRED_CODE, _NOT_YET_VALID_CODE, _HOSTNAME_CODE = 10, 9, 62


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


def speaks_v5(config: MqttConfig) -> bool:
    """Whether ``config`` (an MqttConfig) connects with MQTT 5 rather than 3.1.1."""
    return str(config.protocol) == "5"


def build_client(config: MqttConfig, client_id: str, session: bool = True,
                 reconnect: bool = True) -> _Client:
    """A paho client for ``config`` (an MqttConfig): protocol, auth, TLS, backoff; with
    ``session`` a persistent v3.1.1 session and manual acks (v5 sessions are set at connect);
    without ``reconnect`` the network loop ends at the first disconnect."""
    v5 = speaks_v5(config)
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
    if not speaks_v5(config):
        return None
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = int(config.session_expiry_s)
    properties.ReceiveMaximum = int(config.receive_maximum)
    return properties


def _path(value: Any) -> str | None:
    return None if value is None else str(value)

