"""Does the broker keep a persisted session's subscription across its own restart?

The chaos run (bench_chaos.py) lost the windows published between a mosquitto restart and the
daemons' resubscribe when they shared a subscription, and none with plain subscriptions. This
isolates it: a persistent MQTT 5 session (clean_start off, session expiry 1 h) subscribes QoS 1
to ``t/x`` or ``$share/g/t/x`` and disconnects; the broker (persistence on) is restarted or not;
5 QoS 1 messages are published; the session reconnects without subscribing again and counts
what arrives. Uses the local mosquitto binary on a free port.

    .venv/bin/python bench/repro_shared_restart.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service import services  # noqa: E402


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


def delivered(directory: Path, topic_filter: str, restart: bool, n: int = 5) -> int:
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


def main() -> None:
    version = services.subprocess.run([services.MOSQUITTO, "-h"], capture_output=True,
                                      text=True).stdout.splitlines()[0]
    print(f"{version}; 5 messages published while the session is offline\n")
    print("| subscription | broker restarted while offline | delivered on reconnect |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, topic_filter in enumerate(("t/x", "$share/g/t/x")):
            for restart in (False, True):
                got = delivered(Path(tmp) / f"b{i}{int(restart)}", topic_filter, restart)
                print(f"| `{topic_filter}` | {'yes' if restart else 'no'} | {got} of 5 |")


if __name__ == "__main__":
    main()
