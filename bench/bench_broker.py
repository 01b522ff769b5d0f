"""The transport's own ceiling: window-sized QoS 1 messages through a real mosquitto, no processing.

One paho client publishes ``--windows`` payloads of ``--payload-bytes`` (default 512,000: a 10 s
window at 25.6 kHz as int16) as fast as the broker acknowledges them; a second client
subscribes (QoS 1, v5) and only counts. Prints publish and receive rates, median of ``--runs``,
and the CPU seconds of the broker and of this process per message: what is left of the machine for
the daemon's work at a given rate. bench_service.py measures the daemon itself.

    .venv/bin/python bench/bench_broker.py                # ~10 s
    .venv/bin/python bench/bench_broker.py --payload-bytes 200000 --windows 2000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service import services  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(port: int, broker_pid: int, n: int, size: int, run: int) -> dict[str, float]:
    """Publish ``n`` payloads of ``size`` bytes and wait for them: rates, CPU per message."""
    received: list[float] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub{run}",
                      protocol=mqtt.MQTTv5)
    sub.on_message = lambda client, userdata, message: received.append(time.monotonic())
    sub.connect("127.0.0.1", port)
    sub.subscribe("bench/#", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub{run}",
                      protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(64)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.5)  # both sessions established
    payload = bytes(size)
    cpu_broker, cpu_self = cpu_seconds(broker_pid), time.process_time()
    start = time.monotonic()
    infos = [pub.publish("bench/w", payload, qos=1) for _ in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    published = time.monotonic()
    while len(received) < n and time.monotonic() < published + 60:
        time.sleep(0.005)
    done = time.monotonic()
    out = {"publish_per_s": n / (published - start),
           "receive_per_s": len(received) / (done - start), "lost": n - len(received),
           "broker_cpu_ms": 1e3 * (cpu_seconds(broker_pid) - cpu_broker) / n,
           "clients_cpu_ms": 1e3 * (time.process_time() - cpu_self) / n}
    for client in (pub, sub):
        client.loop_stop()
        client.disconnect()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=1000, help="messages per run")
    p.add_argument("--payload-bytes", type=int, default=512_000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    if args.windows < 1 or args.payload_bytes < 1 or args.runs < 1:
        p.error("--windows, --payload-bytes and --runs must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        broker = services.start_mosquitto(Path(tmp))
        try:
            runs = [one_run(broker.port, broker.proc.pid, args.windows, args.payload_bytes, i)
                    for i in range(args.runs)]
        finally:
            broker.stop()
    print(f"{args.windows} messages of {args.payload_bytes:,} bytes, QoS 1, median of "
          f"{args.runs} runs, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for key in runs[0]:
        print(f"  {key}: {statistics.median(r[key] for r in runs):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
