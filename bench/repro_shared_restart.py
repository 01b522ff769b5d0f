"""Does the broker keep a persisted session's subscription across its own restart, and what does
the daemon lose when it does not?

The chaos run (bench_chaos.py) lost the windows published between a mosquitto restart and the
daemons' resubscribe when they shared a subscription, and none with plain subscriptions. Three
checks, one table and one line, on the local mosquitto binary (persistence on, a free port):

- "bare session": a persistent MQTT 5 session (clean_start off, session expiry 1 h) subscribes
  QoS 1 to ``t/x`` or ``$share/g/t/x`` and disconnects; the broker is restarted or not; 5 QoS 1
  messages are published; the session reconnects *without* subscribing again and counts what
  arrives. This is the broker alone.
- "daemon ingest": the daemon's own ``Ingest`` (1 or 2 members, default settings but
  ``reconnect_min_s`` as given, and ``shared_takeover`` on or off for 2 members), acking every
  window, while a QoS 1 publisher (reconnect delay 0.2 s, each window counted once PUBACKed) sends
  ``--rate`` windows/s; the broker is restarted (SIGTERM, start again on the same port and
  persistence file) after 2 s. Counts the PUBACKed windows no member received, and the seconds
  from the broker listening again to the first member's SUBACK (the daemon subscribes again on
  every CONNACK).
- whether the persistence file written at SIGTERM names a plain and a shared filter at all.

    .venv/bin/python bench/repro_shared_restart.py [--rate 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slewguard.service.config.mqtt import MqttConfig  # noqa: E402
from slewguard.service.ingest import Ingest  # noqa: E402
from slewguard.service.metrics import Metrics  # noqa: E402
from tests.service import services  # noqa: E402

TOPIC = "plant/yard/crane-1/slew/s1/vib"


def session(port: int, received: list[bytes]) -> mqtt.Client:
    """The persistent session "A", connected and looping."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="A", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, message: received.append(message.payload)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=properties)
    client.loop_start()
    services.wait_until(client.is_connected, 10, "session connected")
    return client


def bare_session(directory: Path, topic_filter: str, restart: bool, n: int = 5) -> int:
    """Messages published while the session was offline that arrive when it reconnects."""
    broker = services.start_mosquitto(directory, persistence=True)
    received: list[bytes] = []
    try:
        client = session(broker.port, received)
        client.subscribe(topic_filter, qos=1)
        time.sleep(0.5)
        client.disconnect()
        client.loop_stop()
        if restart:
            broker.restart()
        services.publish(broker.port, [("t/x", b"m%d" % i) for i in range(n)])
        client = session(broker.port, received)
        time.sleep(1.5)
        client.disconnect()
        client.loop_stop()
    finally:
        broker.stop()
    return len(received)


def saved_filters(directory: Path) -> dict[str, bool]:
    """Which of a persistent session's filters the broker writes to mosquitto.db on SIGTERM
    (no message is ever published to them, so only a subscription can put the name there)."""
    broker = services.start_mosquitto(directory, persistence=True)
    try:
        client = session(broker.port, [])
        client.subscribe([("saved/plain", 1), ("$share/g/saved/shared", 1)])
        time.sleep(0.5)
        client.disconnect()
        client.loop_stop()
    finally:
        broker.stop()
    data = (directory / "mosquitto.db").read_bytes()
    return {name: name.encode() in data for name in ("saved/plain", "saved/shared")}


class Member:
    """One daemon ingest that acks every window at once and records its sequence number."""

    def __init__(self, port: int, client_id: str, shared: bool, reconnect_min_s: float,
                 takeover: bool = True) -> None:
        config = MqttConfig(host="127.0.0.1", port=port, client_id=client_id, keepalive_s=5,
                            reconnect_min_s=reconnect_min_s, reconnect_max_s=2.0,
                            topics=["plant/+/+/+/+/vib"], status_topic="repro/status",
                            shared_group="g" if shared else None, shared_takeover=takeover)
        self.metrics = Metrics()
        self.seqs: set[int] = set()
        self.ingest = Ingest(config, self.metrics, self._handle)
        self.ingest.start()
        if not self.ingest.subscribed.wait(15):
            raise RuntimeError(f"{client_id} never subscribed")

    def _handle(self, inbound) -> None:
        self.seqs.add(int(inbound.payload))
        self.ingest.ack(inbound)

    def connects(self) -> float:
        return self.metrics.registry.get_sample_value("slewguard_mqtt_connects_total") or 0.0

    def resubscribed(self) -> bool:
        return self.connects() >= 2 and self.ingest.subscribed.is_set()


class Publisher(threading.Thread):
    """Publishes sequence numbers at ``rate`` per second; ``acked`` holds the PUBACKed ones."""

    def __init__(self, port: int, rate: float, count: int) -> None:
        super().__init__(daemon=True)
        self.rate, self.count = rate, count
        self.acked: set[int] = set()
        self._seq_of: dict[int, int] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="repro-pub",
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.2, 2.0)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        services.wait_until(self.client.is_connected, 10, "publisher connected")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            seq = self._seq_of.pop(mid, None)
            if seq is not None and not reason_code.is_failure:
                self.acked.add(seq)

    def run(self) -> None:
        start = time.monotonic()
        for seq in range(self.count):
            time.sleep(max(0.0, start + seq / self.rate - time.monotonic()))
            with self._lock:  # paho queues while offline and resends after its reconnect
                info = self.client.publish(TOPIC, b"%d" % seq, qos=1)
                self._seq_of[info.mid] = seq

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def daemon_ingest(directory: Path, shared: bool, members: int, takeover: bool, rate: float,
                  reconnect_min_s: float, stream_s: float = 6.0) -> tuple[int, int, float]:
    """(PUBACKed windows, of those received by no member, s from broker back to first SUBACK)."""
    broker = services.start_mosquitto(directory, persistence=True)
    group = [Member(broker.port, f"repro-{i}", shared, reconnect_min_s, takeover)
             for i in range(members)]
    publisher = Publisher(broker.port, rate, int(rate * stream_s))
    try:
        publisher.start()
        time.sleep(2.0)
        broker.restart()
        back = time.monotonic()
        services.wait_until(lambda: any(m.resubscribed() for m in group), 30, "resubscribed")
        gap_s = time.monotonic() - back
        publisher.join()
        services.wait_until(lambda: len(publisher.acked) == publisher.count, 30, "all PUBACKed")
        time.sleep(2.0)  # the last windows reach the members
        received = set().union(*(m.seqs for m in group))
        return len(publisher.acked), len(publisher.acked - received), gap_s
    finally:
        publisher.close()
        for member in group:
            member.ingest.stop()
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=16.0, help="windows per second")
    parser.add_argument("--repeats", type=int, default=3, help="runs per daemon-ingest row")
    parser.add_argument("--reconnect-min-s", type=float,
                        default=MqttConfig.model_fields["reconnect_min_s"].default,
                        help="mqtt.reconnect_min_s of the members (default: the config's)")
    args = parser.parse_args()
    logging.getLogger("slewguard").setLevel(logging.ERROR)  # reconnect warnings: expected here
    version = services.subprocess.run([services.MOSQUITTO, "-h"], capture_output=True,
                                      text=True).stdout.splitlines()[0]
    print(f"{version}, persistence on; daemon rows: {args.rate:g} windows/s, broker restarted "
          f"2 s into a 6 s stream, mqtt.reconnect_min_s {args.reconnect_min_s:g}, "
          f"{args.repeats} runs each\n")
    print("| client | subscription | broker restart | lost of published | "
          "broker back -> first SUBACK |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for topic_filter in ("t/x", "$share/g/t/x"):
            for restart in (False, True):
                name = f"bare-{len(topic_filter)}-{int(restart)}"
                got = bare_session(Path(tmp) / name, topic_filter, restart)
                print(f"| bare session, offline, does not resubscribe | `{topic_filter}` | "
                      f"{'yes' if restart else 'no'} | {5 - got} of 5 | - |")
        saved = saved_filters(Path(tmp) / "saved")
        for shared, members, takeover in ((False, 1, True), (True, 1, True), (True, 2, True),
                                          (True, 2, False)):
            runs = [daemon_ingest(Path(tmp) / f"d{int(shared)}{members}{int(takeover)}{r}",
                                  shared, members, takeover, args.rate, args.reconnect_min_s)
                    for r in range(args.repeats)]
            lost = ", ".join(f"{n_lost} of {n_pub}" for n_pub, n_lost, _ in runs)
            gaps = [gap for _, _, gap in runs]
            topic_filter = "$share/g/plant/+/+/+/+/vib" if shared else "plant/+/+/+/+/vib"
            client = f"daemon ingest x{members}, online"
            if members > 1:
                client += f", mqtt.shared_takeover {str(takeover).lower()}"
            print(f"| {client} | `{topic_filter}` | yes | {lost} | "
                  f"{min(gaps):.2f}-{max(gaps):.2f} s (median {statistics.median(gaps):.2f}) |")
    print(f"\nmosquitto.db after SIGTERM holds `saved/plain`: {saved['saved/plain']}; "
          f"`saved/shared` (subscribed as `$share/g/saved/shared`): {saved['saved/shared']}")


if __name__ == "__main__":
    main()
