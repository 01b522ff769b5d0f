"""Alert webhooks through a real local HTTP receiver that is down for part of the run."""

import base64
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from slewguard.service.config.alerts import AlertsConfig, WebhookConfig
from slewguard.service.sinks.alerts import AlertSink
from slewguard.service.sinks.webhook import Renderer, WebhookDelivery, WebhookQueue
from tests.service import services
from tests.service.test_alerts import result
from tests.service.test_config import errors_of, minimal


class Receiver:
    """A ticketing endpoint on a fixed port: ``up()``/``down()`` open and close the port,
    ``fail_next`` answers that many requests with ``fail_status``; accepted bodies are kept."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or services.free_port()
        self.accepted: list[dict] = []
        self.raw: list[bytes] = []
        self.headers: list[dict] = []
        self.attempts = 0
        self.fail_next, self.fail_status = 0, 503
        self.arrived = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def up(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.attempts += 1
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= failing
                    if not failing:
                        receiver.raw.append(body)
                        receiver.headers.append(dict(self.headers))
                        try:
                            receiver.accepted.append(json.loads(body))
                        except ValueError:
                            receiver.accepted.append({"text": body.decode()})
                    receiver.arrived.notify_all()
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[dict]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.accepted) >= count, timeout_s)
            assert len(self.accepted) >= count, f"{len(self.accepted)} of {count} arrived"
            return list(self.accepted)


def sink_for(receiver: Receiver, path, registry=None, fmt: str = "generic", **hook) -> AlertSink:
    config = AlertsConfig(k=2, n=3, escalate_envelope_db=[15.0, 25.0],
                          escalate_confidence=[1.0, 1.0],
                          webhooks=[{"name": "tickets", "url": receiver.url, "format": fmt,
                                     "retry_min_s": 0.05, "retry_max_s": 0.4, "timeout_s": 2,
                                     **hook}])
    return AlertSink(config, path, registry, idle_s=0.1).start()


def test_one_ticket_per_fault_through_a_receiver_that_is_down(tmp_path):
    receiver = Receiver()  # port closed at first
    registry = CollectorRegistry()
    sink = sink_for(receiver, tmp_path / "alerts.sqlite3", registry)
    try:
        sink.write([result(k, "outer_race", db=8.0) for k in range(3)])   # firing
        sink.write([result(k, "outer_race", db=30.0) for k in range(3, 6)])  # escalated
        time.sleep(0.5)  # several refused attempts
        receiver.fail_next = 3
        receiver.up()  # then three 503s, then 200s
        sink.write([result(k, "healthy") for k in range(6, 9)])  # resolved
        got = receiver.wait_for(4)
        time.sleep(0.3)  # nothing else may come
    finally:
        sink.close()
        receiver.down()
    assert [(e["event"], e["severity"]) for e in receiver.accepted] == [
        ("firing", "warning"), ("escalated", "major"), ("escalated", "critical"),
        ("resolved", "critical")]  # mean BPFO level of the votes: 8 -> 15.3 -> 22.7 -> 30 dB
    assert len({e["dedup_key"] for e in got}) == 1
    value = registry.get_sample_value
    retries = value("slewguard_webhook_deliveries_total", {"webhook": "tickets",
                                                           "outcome": "retry"})
    assert retries >= 4 and receiver.attempts >= 6  # refused ones never reach the handler
    assert value("slewguard_webhook_deliveries_total", {"webhook": "tickets",
                                                        "outcome": "ok"}) == 4
    assert value("slewguard_webhook_queue_depth", {"webhook": "tickets"}) == 0


def test_queue_survives_a_restart_while_the_receiver_is_down(tmp_path):
    receiver = Receiver()
    path = tmp_path / "alerts.sqlite3"
    sink = sink_for(receiver, path)
    sink.write([result(k, "inner_race") for k in range(3)])
    sink.write([result(k, "healthy") for k in range(3, 6)])
    time.sleep(0.2)
    sink.close()  # daemon stops with both events undelivered
    assert WebhookQueue(path).depth("tickets") == 2
    receiver.up()
    again = sink_for(receiver, path)
    try:
        again.write([result(k, "healthy") for k in range(3, 6)])  # replayed: no new event
        got = receiver.wait_for(2)
        time.sleep(0.3)
    finally:
        again.close()
        receiver.down()
    assert [e["event"] for e in receiver.accepted] == ["firing", "resolved"]
    assert got[0]["dedup_key"] == got[1]["dedup_key"]


def test_alertmanager_v4_shape(tmp_path):
    receiver = Receiver().up()
    sink = sink_for(receiver, tmp_path / "a.sqlite3", fmt="alertmanager")
    try:
        sink.write([result(k, "rolling_element") for k in range(3)])
        sink.write([result(k, "healthy") for k in range(3, 6)])
        firing, resolved = receiver.wait_for(2)
    finally:
        sink.close()
        receiver.down()
    assert firing["version"] == "4" and firing["receiver"] == "tickets"
    assert firing["groupKey"] == resolved["groupKey"]
    assert (firing["status"], resolved["status"]) == ("firing", "resolved")
    (alert,) = firing["alerts"]
    assert alert["labels"]["state"] == "rolling_element" and alert["labels"]["bearing"] == "slew"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert resolved["alerts"][0]["endsAt"] > alert["startsAt"]
    assert alert["fingerprint"] == resolved["alerts"][0]["fingerprint"]
    assert "var-bearing=slew" in alert["annotations"]["dashboard"]


def test_template_for_a_jira_style_body_and_custom_headers(tmp_path):
    template = tmp_path / "jira.j2"
    template.write_text('{"fields": {"summary": {{ event.summary | tojson }}, "labels": '
                        '[{{ event.dedup_key | tojson }}], "description": "BPFO '
                        '{{ "%.1f" | format(event.evidence.envelope_db.bpfo) }} dB"}}')
    receiver = Receiver().up()
    sink = sink_for(receiver, tmp_path / "a.sqlite3", fmt="template", template_file=template,
                    headers={"Authorization": "Bearer t0ken"})
    try:
        sink.write([result(k, "outer_race", db=12.25) for k in range(3)])
        (body,) = receiver.wait_for(1)
    finally:
        sink.close()
        receiver.down()
    assert body["fields"]["summary"] == "outer_race on yard1/crane1/slew (warning)"
    assert body["fields"]["description"] == "BPFO 12.2 dB"
    assert receiver.headers[0]["Authorization"] == "Bearer t0ken"


def test_sandbox_refuses_and_bad_bodies_are_set_aside(tmp_path):
    receiver = Receiver().up()
    queue = WebhookQueue(tmp_path / "q.sqlite3")
    hooks = [WebhookConfig(name="evil", url=receiver.url, format="template",
                           template="{{ event.__class__.__mro__[1].__subclasses__() }}"),
             WebhookConfig(name="picky", url=receiver.url)]
    queue.commit({"evil": [{"event": "firing"}], "picky": [{"event": "a"}, {"event": "b"}]}, {})
    delivery = WebhookDelivery(queue, hooks)
    try:
        receiver.fail_next, receiver.fail_status = 1, 400
        for _ in range(4):
            delivery.step()
    finally:
        receiver.down()
    assert queue.depth("evil") == 0 and queue.depth("picky") == 0
    assert receiver.accepted == [{"event": "b"}]  # "a" was refused with 400: set aside


def test_backoff_doubles_up_to_the_cap_on_an_injected_clock(tmp_path):
    receiver = Receiver().up()
    receiver.fail_next = 10**6
    now = [1000.0]
    queue = WebhookQueue(tmp_path / "q.sqlite3", clock=lambda: now[0])
    queue.commit({"t": [{"event": "firing"}]}, {})
    hook = WebhookConfig(name="t", url=receiver.url, retry_min_s=1.0, retry_max_s=8.0)
    delivery = WebhookDelivery(queue, [hook], clock=lambda: now[0])
    delays = []
    try:
        for _ in range(6):
            delays.append(delivery.step())
            assert delivery.step() == delays[-1]  # not due yet: no request
            now[0] += delays[-1]
        receiver.fail_next = 0
        assert delivery.step() == 0.0
    finally:
        receiver.down()
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert receiver.attempts == 7 and len(receiver.accepted) == 1


def test_renderer_generic_is_the_event():
    hook = WebhookConfig(name="g", url="http://x", headers={"X-Api-Key": "k"})
    body, headers = Renderer(hook).render({"event": "firing", "dedup_key": "d"})
    assert json.loads(body) == {"event": "firing", "dedup_key": "d"}
    assert headers["X-Api-Key"] == "k" and headers["Content-Type"] == "application/json"


OVERRUNS = [
    ("{{ ('a' * 200000000) | length }}", "memory"),  # one C call, output tiny
    ("{{ 'x' | center(1000000000) }}", "memory"),
    ("{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s | length }}", "memory"),
    ("{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}", "size"),
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "time"),
]


@pytest.mark.parametrize("template,limit", OVERRUNS)
def test_a_template_that_overruns_is_stopped_counted_and_set_aside(tmp_path, template, limit):
    from slewguard.service.alerts import AlertMetrics
    from slewguard.service.sinks.template import TemplateLimits

    receiver = Receiver().up()
    queue = WebhookQueue(tmp_path / "q.sqlite3")
    hooks = [WebhookConfig(name="greedy", url=receiver.url, format="template", template=template),
             WebhookConfig(name="plain", url=receiver.url)]
    queue.commit({"greedy": [{"event": "firing"}], "plain": [{"event": "firing"}]}, {})
    registry = CollectorRegistry()
    delivery = WebhookDelivery(queue, hooks, AlertMetrics(registry),
                               limits=TemplateLimits(timeout_s=1.0))
    started = time.monotonic()
    try:
        delivery.step()
    finally:
        receiver.down()
    assert time.monotonic() - started < 10  # the time limit holds (1 s + start)
    assert queue.depth("greedy") == 0 and receiver.accepted == [{"event": "firing"}]
    value = registry.get_sample_value
    assert value("slewguard_webhook_template_overruns_total",
                 {"webhook": "greedy", "limit": limit}) == 1
    assert value("slewguard_webhook_deliveries_total",
                 {"webhook": "greedy", "outcome": "rejected"}) == 1


def test_a_template_within_the_limits_renders_in_the_child():
    from slewguard.service.sinks.template import TemplateLimits

    hook = WebhookConfig(name="t", url="http://x", format="template",
                         template="{% for v in event.votes %}{{ v }},{% endfor %}")
    body, _ = Renderer(hook, TemplateLimits(max_bytes=4000)).render({"votes": list(range(1000))})
    assert body == b"".join(f"{i},".encode() for i in range(1000))


def test_an_outage_is_one_warning_a_reminder_and_one_recovery_without_secrets(tmp_path,
                                                                               caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.webhook")
    receiver, picky = Receiver().up(), Receiver().up()
    receiver.fail_next = 4  # 503 at 0, 100, 300 and 500 s; 200 from 700 s on
    picky.fail_next, picky.fail_status = 1, 400  # refuses one event for good: not an outage
    now = [0.0]
    queue = WebhookQueue(tmp_path / "q.sqlite3", clock=lambda: now[0])
    queue.commit({"tickets": [{"event": e} for e in ("firing", "escalated", "resolved")],
                  "picky": [{"event": "a", "dedup_key": "k1"}, {"event": "b", "dedup_key": "k2"}]},
                 {})
    secret_url = f"{receiver.url}?token=s3cr3t-tok&p=hunter2"
    hooks = [WebhookConfig(name="tickets", url=secret_url, retry_min_s=100, retry_max_s=200,
                           headers={"Authorization": "Bearer h3ader-secret"}),
             WebhookConfig(name="picky", url=picky.url)]
    delivery = WebhookDelivery(queue, hooks, clock=lambda: now[0], idle_s=1e4)
    try:
        while queue.depth("tickets") and now[0] < 2000:
            now[0] += delivery.step()
    finally:
        receiver.down()
        picky.down()
    assert [e["event"] for e in receiver.accepted] == ["firing", "escalated", "resolved"]
    assert receiver.attempts == 7 and picky.accepted == [{"event": "b", "dedup_key": "k2"}]
    ours = [r for r in caplog.records if r.name == "slewguard.service.sinks.webhook"]
    shown = f"{receiver.url}?token=***&p=***"
    assert [r.getMessage() for r in ours if r.levelno == logging.WARNING] == [
        f"webhook tickets is down (queued events: 3), retrying with backoff: {shown} "
        "answered 503",
        f"webhook tickets still down after 300 s (failed attempts: 3, queued events: 3); last "
        f"error: {shown} answered 503"]
    assert [r.getMessage() for r in ours if r.levelno == logging.INFO] == [
        "webhook tickets recovered after 700 s (failed attempts: 4); events delivered: 3, "
        "still queued: 0"]
    assert [r.getMessage() for r in ours if r.levelno == logging.ERROR] == [
        "webhook picky rejected a event k1 with HTTP 400; set aside"]
    assert not [r for r in ours if "picky" in r.getMessage() and r.levelno < logging.ERROR]
    for secret in ("s3cr3t-tok", "hunter2", "h3ader-secret"):
        assert secret not in caplog.text


def test_a_receiver_that_is_down_then_back_through_the_delivery_thread(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.webhook")
    receiver = Receiver()  # port closed: every attempt is refused
    sink = sink_for(receiver, tmp_path / "alerts.sqlite3", url=f"{receiver.url}?token=s3cr3t")
    try:
        sink.write([result(k, "outer_race", db=8.0) for k in range(3)])  # firing
        sink.write([result(k, "healthy") for k in range(3, 6)])  # resolved
        time.sleep(0.6)  # several refused attempts (backoff 0.05 .. 0.4 s)
        receiver.up()
        receiver.wait_for(2)
        time.sleep(0.2)
    finally:
        sink.close()
        receiver.down()
    ours = [r for r in caplog.records if r.name == "slewguard.service.sinks.webhook"]
    (down,) = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    assert re.fullmatch(r"webhook tickets is down \(queued events: [12]\), retrying with "
                        rf"backoff: {re.escape(receiver.url)}\?token=\*\*\* answered nothing",
                        down), down
    (recovered,) = [r.getMessage() for r in ours if r.levelno == logging.INFO]
    assert re.fullmatch(r"webhook tickets recovered after [0-9]+ s \(failed attempts: [0-9]+\); "
                        r"events delivered: 2, still queued: 0", recovered), recovered
    assert "s3cr3t" not in caplog.text


def webhook_lines(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "slewguard.service.sinks.webhook" and r.levelno == level]


def test_credentials_in_the_url_go_as_basic_auth_and_are_never_shown(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.webhook")
    receiver = Receiver().up()
    receiver.fail_next = 1  # one 503, so the outage lines show the URL
    url = receiver.url.replace("http://", "http://bot:p%40ss-h0und@")
    now = [0.0]
    queue = WebhookQueue(tmp_path / "q.sqlite3", clock=lambda: now[0])
    queue.commit({"t": [{"event": "firing"}]}, {})
    delivery = WebhookDelivery(queue, [WebhookConfig(name="t", url=url)], clock=lambda: now[0])
    try:
        while queue.depth("t") and now[0] < 100:
            now[0] += delivery.step()
    finally:
        receiver.down()
    assert receiver.accepted == [{"event": "firing"}]
    (headers,) = receiver.headers
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"bot:p@ss-h0und").decode()
    assert headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert webhook_lines(caplog, logging.WARNING) == [
        f"webhook t is down (queued events: 1), retrying with backoff: "
        f"http://***@127.0.0.1:{receiver.port}/hooks answered 503"]
    assert "h0und" not in caplog.text and "bot" not in caplog.text


def test_credentials_in_the_url_and_an_authorization_header_are_refused_at_load():
    hook = {"name": "t", "url": "https://bot:hunter2@h/hooks",
            "headers": {"authorization": "Bearer x"}}
    (line,) = errors_of(minimal(alerts={"webhooks": [hook]}))
    assert line == ("alerts.webhooks.0: url='https://***@h/hooks' has user info (sent as Basic "
                    "auth) and headers sets Authorization too: keep one of them")


def test_backoff_and_outage_times_run_on_the_monotonic_clock(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.webhook")
    receiver = Receiver().up()
    receiver.fail_next = 2
    wall, monotonic = [1.7e9], [50.0]
    queue = WebhookQueue(tmp_path / "q.sqlite3", clock=lambda: wall[0])
    queue.commit({"t": [{"event": "firing"}]}, {})
    hook = WebhookConfig(name="t", url=receiver.url, retry_min_s=10.0, retry_max_s=10.0)
    delivery = WebhookDelivery(queue, [hook], clock=lambda: monotonic[0])
    try:
        assert delivery.step() == 10.0  # 503
        wall[0] -= 3600.0  # NTP steps the wall clock back an hour: no effect on the retry
        assert delivery.step() == 10.0  # not due yet: no request
        monotonic[0] += 10.0
        assert delivery.step() == 10.0  # 503
        monotonic[0] += 10.0
        assert delivery.step() == 0.0  # delivered
    finally:
        receiver.down()
    assert receiver.attempts == 3 and receiver.accepted == [{"event": "firing"}]
    assert webhook_lines(caplog, logging.INFO) == [
        "webhook t recovered after 20 s (failed attempts: 2); events delivered: 1, still "
        "queued: 0"]
    assert WebhookDelivery(queue, [hook]).clock is time.monotonic


def test_the_recovery_counts_every_event_queued_in_the_outage(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="slewguard.service.sinks.webhook")
    receiver = Receiver().up()
    receiver.fail_next = 3
    now = [0.0]
    queue = WebhookQueue(tmp_path / "q.sqlite3", clock=lambda: now[0])
    queue.commit({"t": [{"event": "firing", "n": n} for n in range(5)]}, {})
    hook = WebhookConfig(name="t", url=receiver.url, retry_min_s=10.0, retry_max_s=10.0)
    delivery = WebhookDelivery(queue, [hook], clock=lambda: now[0])
    try:
        for _ in range(4):  # three 503s, then the first event goes through
            now[0] += delivery.step()
        queue.commit({"t": [{"event": "firing", "n": 5}]}, {})  # new after the recovery
        while len(receiver.accepted) < 5:
            now[0] += delivery.step()
        assert webhook_lines(caplog, logging.INFO) == [
            "webhook t recovered after 30 s (failed attempts: 3); events delivered: 5, still "
            "queued: 1"]
        now[0] += delivery.step()
    finally:
        receiver.down()
    assert [e["n"] for e in receiver.accepted] == [0, 1, 2, 3, 4, 5]
    assert len(webhook_lines(caplog, logging.INFO)) == 1 and queue.depth("t") == 0
