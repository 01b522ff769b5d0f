"""Taking over the session of a shared-subscription member that is down, so no window waits for it.

Mosquitto keeps routing a share of a shared subscription's windows to a member's persistent
session while the member is down, and deletes them if that session expires
(docs/shared_subscriptions.md). So when a peer's retained status turns ``offline`` (its Last Will
after a crash, or its clean stop) and stays so for ``mqtt.shared_takeover_grace_s`` while the
live member stays connected (not the broker's own restart: see ``Takeovers``), the live member:

1. connects with the peer's client id and ``clean_start=False`` (no Will, no status, no reconnect);
2. UNSUBSCRIBEs the peer's session from the group: the broker routes new windows to live members;
3. takes the windows queued or in flight in that session through its own pipeline, each acked
   only after its result is in the outbox, as its own are;
4. when nothing came for ``quiet_s`` and every window is acked, disconnects with Session Expiry
   Interval 0 (MQTT 5), which deletes the empty session. On MQTT 3.1.1 an empty session without
   subscriptions stays behind (deleting it needs a clean-session connect, which could throw out
   the peer if it just came back).

Races end safely because a takeover never reconnects: when the peer (or another member's
takeover) connects with that client id, the broker disconnects us, our unacked windows go back
to whoever holds the session, and our late acks are skipped. The peer, when it returns, finds no
session or an unsubscribed one and subscribes again, as it does on every connect.

Example:
    >>> t = SessionTakeover(config.mqtt, "edge-b", deliver=pipeline.submit,   # doctest: +SKIP
    ...                     generation=7, on_done=print)
    >>> t.start()                                                              # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from slewguard.service.ingest import Inbound, subscription_topics
from slewguard.service.mqtt_client import ConnectFailures, build_client, session_properties

if TYPE_CHECKING:  # ingest.py imports this module when it takes over sessions
    from slewguard.service.config.mqtt import MqttConfig
    from slewguard.service.ingest import Ingest

log = logging.getLogger(__name__)
OUTCOMES = ("drained", "empty", "interrupted", "refused", "unreachable", "stopped")
CONNECT_TIMEOUT_S = 30.0
_POLL_S = 0.1


class SessionTakeover:
    """Drains one peer's session; ``on_done(takeover)`` runs once with ``outcome`` set.

    ``deliver(inbound)`` hands a window to the pipeline (it may block: backpressure; a window it
    drops stays unacked, so the session is then kept, not deleted); ``ack(inbound)`` is what the
    pipeline calls back, through ``Ingest.ack``.
    """

    def __init__(self, config: MqttConfig, peer_id: str, deliver: Callable[[Inbound], object],
                 generation: int, on_done: Callable[[SessionTakeover], None],
                 quiet_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.peer_id = peer_id
        self.deliver = deliver
        self.generation = generation
        self.on_done = on_done
        self.quiet_s = quiet_s
        self.clock = clock
        self.status_filter = f"{config.status_topic}/+"  # the peer subscribed to it as well
        self.outcome: str | None = None
        self.windows = 0
        self.client = build_client(config, peer_id, reconnect=False)
        self.client.on_connect_error = ConnectFailures(config, f"takeover of {peer_id}").failed
        self.client.on_connect = self._on_connect
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self._lock = threading.Lock()
        self._inflight: set[int] = set()
        self._unsubscribed = False
        self._closing: str | None = None  # the outcome our own DISCONNECT will mean
        self._last_activity_s = clock()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"takeover-{peer_id}", daemon=True)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def start(self) -> None:
        """Connect as the peer and drain its session in the background."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect keeping the session (and whatever is still in it) for the peer."""
        with self._lock:
            if self._closing is None:
                self._closing = "stopped"
        self.client.disconnect()
        self._finished.wait(timeout_s)
        self._finish("stopped")  # no-op when the disconnect already ended it
        self._thread.join(timeout_s)

    def ack(self, message: Inbound) -> bool:
        """Acknowledge a window of this takeover if its connection still holds it."""
        with self._lock:
            if (message.generation != self.generation or message.mid not in self._inflight
                    or self.finished):
                return False  # the broker gives it to whoever holds the session now
            self._inflight.discard(message.mid)
            self._last_activity_s = self.clock()
        if message.qos > 0:
            self.client.ack(message.mid, message.qos)
        return True

    def _run(self) -> None:
        v5 = str(self.config.protocol) == "5"
        self.client.connect_async(
            self.config.host, int(self.config.port), keepalive=int(self.config.keepalive_s),
            clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=session_properties(self.config))
        self.client.loop_start()
        started_s = self.clock()
        while not self._finished.wait(_POLL_S):
            if self._drained():
                self._close("drained")
            elif self.outcome is None and not self.client.is_connected() and \
                    self.clock() - started_s > CONNECT_TIMEOUT_S and self._closing is None:
                self._finish("unreachable")
        self.client.loop_stop()

    def _drained(self) -> bool:
        # After the UNSUBACK nothing new enters the session, and the broker sends its queued
        # windows as soon as an ack frees a slot: quiet for quiet_s with none unacked means empty.
        with self._lock:
            return (self._unsubscribed and not self._inflight and self._closing is None
                    and self.clock() - self._last_activity_s >= self.quiet_s)

    def _close(self, outcome: str) -> None:
        with self._lock:
            if self._closing is not None:
                return
            self._closing = outcome
        properties = None
        if str(self.config.protocol) == "5":
            properties = Properties(PacketTypes.DISCONNECT)
            properties.SessionExpiryInterval = 0  # the session ends with this connection
        self.client.disconnect(properties=properties)

    def _finish(self, outcome: str) -> None:
        with self._lock:
            if self.outcome is not None:
                return
            self.outcome = outcome
        self._finished.set()
        self.on_done(self)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("takeover of %s: broker refused the connection: %s", self.peer_id,
                        reason_code)
            self._finish("refused")
            client.disconnect()
        elif not flags.session_present:
            self._close("empty")  # nothing was queued: delete the session we just made
        else:
            topics = subscription_topics(list(self.config.topics), self.config.shared_group)
            client.unsubscribe([*topics, self.status_filter])

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                        reason_codes: Any, properties: Any) -> None:
        with self._lock:
            self._unsubscribed = True
            self._last_activity_s = self.clock()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if mqtt.topic_matches_sub(self.status_filter, message.topic):
            client.ack(message.mid, message.qos)  # the peer's view of member statuses: not a window
            return
        inbound = Inbound(message.topic, bytes(message.payload), message.mid, message.qos,
                          time.monotonic(), self.generation, self.peer_id)
        with self._lock:
            if message.qos > 0:
                self._inflight.add(message.mid)  # stays until acked, so never "drained" before
            self._last_activity_s = self.clock()
            self.windows += 1
        self.deliver(inbound)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason_code: Any, properties: Any) -> None:
        with self._lock:
            closing = self._closing
        # Not ours: the peer or another member took the session over, or the broker went away.
        self._finish(closing or "interrupted")


class Takeovers:
    """The takeovers of one Ingest: one per peer whose status said "offline", at a time.

    A peer is taken over only once its "offline" has stood for ``mqtt.shared_takeover_grace_s``
    while our own connection stayed up. On a broker restart mosquitto sends every member's Will
    to the others just before it drops them, and after it each member gets the others' retained
    "offline" on its own reconnect, a moment before they reconnect too. Taking over then would
    connect with the client id of a member that is back, and the broker would disconnect it. So
    our disconnect forgets every pending "offline" (the broker sends the retained one again when
    we are back) and a peer's "online" cancels its own.
    """

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.grace_s = float(ingest.config.shared_takeover_grace_s)
        self._lock = threading.Lock()
        self._running: dict[str, SessionTakeover] = {}
        self._pending: dict[str, threading.Timer] = {}
        self._generation = 0
        self._stopped = False

    def on_status(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """A member status arrived (paho's network thread): take over if it stays offline."""
        if message.qos > 0:
            client.ack(message.mid, message.qos)  # manual acks: else it holds an in-flight slot
        peer = message.topic.rsplit("/", 1)[-1]
        try:
            state = json.loads(message.payload).get("state")
        except (ValueError, AttributeError):
            log.debug("ignoring a status message on %s that is not a JSON object", message.topic)
            return
        if peer == self.ingest.client_id:
            return
        if state == "offline":
            self._take_over_later(peer)
        elif state == "online":
            self._cancel(peer)

    def on_disconnect(self) -> None:
        """Our connection dropped: forget pending offline statuses, they may be the broker's."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for timer in pending.values():
            timer.cancel()
        if pending:
            log.info("connection lost: not taking over %s unless still offline after the "
                     "reconnect", ", ".join(sorted(pending)))

    def _take_over_later(self, peer: str) -> None:
        with self._lock:
            if self._stopped or peer in self._pending or peer in self._running:
                return  # the queued and the retained copy of one Will both arrive on a connect
            timer = threading.Timer(self.grace_s, self._grace_over, (peer,))
            timer.daemon = True
            self._pending[peer] = timer
        log.info("shared-subscription member %s is offline: taking over its session if it is "
                 "still offline in %.1f s (mqtt.shared_takeover_grace_s)", peer, self.grace_s)
        timer.start()

    def _cancel(self, peer: str) -> None:
        with self._lock:
            timer = self._pending.pop(peer, None)
        if timer is not None:
            timer.cancel()
            log.info("shared-subscription member %s is back online: no takeover", peer)

    def _grace_over(self, peer: str) -> None:
        with self._lock:
            # The timer runs this on its own thread: anything else means it was cancelled.
            if self._pending.get(peer) is not threading.current_thread():
                return
            del self._pending[peer]
        if self.ingest.connected.is_set():
            self.take_over(peer)

    def take_over(self, peer: str) -> None:
        """Start draining ``peer``'s session unless that is already under way."""
        with self._lock:
            if self._stopped or peer in self._running:
                return
            self._generation += 1
            takeover = SessionTakeover(self.ingest.config, peer, self.ingest.deliver,
                                       self._generation, self._done,
                                       float(self.ingest.config.shared_takeover_quiet_s))
            self._running[peer] = takeover
        log.info("shared-subscription member %s is offline: taking over its session so its "
                 "windows do not wait for it (mqtt.shared_takeover)", peer)
        takeover.start()

    def ack(self, message: Inbound) -> bool:
        with self._lock:
            takeover = self._running.get(message.session)
        return takeover is not None and takeover.ack(message)

    def stop(self, timeout_s: float) -> None:
        with self._lock:
            self._stopped = True
            running = list(self._running.values())
            pending, self._pending = self._pending, {}
        for timer in pending.values():
            timer.cancel()
        for takeover in running:
            takeover.stop(timeout_s)

    def _done(self, takeover: SessionTakeover) -> None:
        with self._lock:
            if self._running.get(takeover.peer_id) is takeover:
                del self._running[takeover.peer_id]
        self.ingest.metrics.mqtt_session_takeovers_total.labels(outcome=takeover.outcome).inc()
        level = logging.WARNING if takeover.outcome in ("refused", "unreachable") else logging.INFO
        log.log(level, "takeover of %s's session ended (%s) after %d windows", takeover.peer_id,
                takeover.outcome, takeover.windows)
