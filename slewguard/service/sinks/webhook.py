"""Alert webhooks: a durable SQLite queue, payload shapes, and a delivery thread with backoff.

Events (dicts in the generic shape, see ``slewguard.service.alerts``) are queued once per webhook
in the same transaction that records the bearing states, so nothing is lost while the ticketing
system is down or the daemon restarts. Each webhook is delivered strictly in queue order (a
"resolved" never overtakes its "firing"): the oldest pending row is retried with exponential
backoff on connection errors, timeouts, 408, 429 and 5xx; any other 4xx is set aside ("rejected"),
counted and logged, and the next row goes (a refusal is not an outage). Each webhook's outages
are logged by a ``WebhookHealth``: one WARNING when its receiver starts failing, a reminder
every ``OUTAGE_REMIND_S`` while it keeps failing, one INFO once it has taken the events queued
in the outage (with their number); never a line per event or attempt. Backoff waits and outage
durations run on a monotonic clock (a wall-clock step must not stall or hurry a retry); the
queue's timestamps are wall-clock, for people and for the queue-to-delivery time, which spans
restarts. User info in a URL (``https://user:password@host/...``) is sent as HTTP Basic auth
and shown masked. Shapes: ``generic`` (the event as JSON),
``alertmanager`` (Alertmanager webhook v4: version, groupKey, status, receiver, alerts[] with
labels, annotations, startsAt, endsAt, fingerprint) and ``template`` (Jinja2, sandboxed, with
bounded time, memory and output: ``sinks.template``; an overrun is counted in
``slewguard_webhook_template_overruns_total{webhook,limit}`` and the event set aside).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> q = WebhookQueue(Path(tempfile.mkdtemp()) / "alerts.sqlite3")
    >>> q.commit({"ticketing": [{"event": "firing", "dedup_key": "k"}]}, {})
    >>> q.depth("ticketing"), q.head("ticketing")[1]["event"]
    (1, 'firing')
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slewguard.service.config.alerts import WebhookConfig
from slewguard.service.redact import redact_url, redact_urls
from slewguard.service.sinks.health import SinkHealth
from slewguard.service.sinks.template import (
    DEFAULT_LIMITS,
    TemplateLimits,
    TemplateOverrunError,
    render_template,
)

if TYPE_CHECKING:
    from slewguard.service.alerts import AlertMetrics

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({408, 425, 429})
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, webhook TEXT NOT NULL, body TEXT NOT NULL,
    created_s REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at_s REAL NOT NULL DEFAULT 0, failed TEXT);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (webhook, failed, id);
CREATE TABLE IF NOT EXISTS bearing_states (key TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


class WebhookQueue:
    """Pending webhook deliveries and the voted bearing states in one SQLite file (WAL).

    Thread-safe: the alert sink writes, the delivery thread reads and deletes.
    """

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def commit(self, events: Mapping[str, Sequence[dict]], states: Mapping[str, dict]) -> None:
        """Queue ``events`` per webhook name and upsert ``states``, in one transaction.

        Example:
            >>> q = WebhookQueue(":memory:")
            >>> q.commit({}, {"yard/crane/slew": {"state": "healthy"}})
            >>> q.states()["yard/crane/slew"]["state"]
            'healthy'
        """
        now = self.clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO deliveries (webhook, body, created_s, next_at_s) "
                    "VALUES (?, ?, ?, ?)",
                    [(name, json.dumps(e, sort_keys=True), now, now)
                     for name, batch in events.items() for e in batch])
                self._db.executemany(
                    "INSERT OR REPLACE INTO bearing_states (key, body) VALUES (?, ?)",
                    [(key, json.dumps(body, sort_keys=True)) for key, body in states.items()])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def head(self, webhook: str) -> tuple[int, dict, int, float, float] | None:
        """The oldest pending delivery: (id, event, attempts, next_at_s, created_s) or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, body, attempts, next_at_s, created_s FROM deliveries "
                "WHERE webhook = ? AND failed IS NULL ORDER BY id LIMIT 1", (webhook,)).fetchone()
        if row is None:
            return None
        return row[0], json.loads(row[1]), row[2], row[3], row[4]

    def done(self, row_id: int) -> None:
        """Delivered: forget the row."""
        self._exec("DELETE FROM deliveries WHERE id = ?", (row_id,))

    def retry_at(self, row_id: int, attempts: int, next_at_s: float) -> None:
        """Failed this time: ``attempts`` so far, the next one due at ``next_at_s`` (clock
        seconds: for an operator reading the file; the delivery keeps its own schedule)."""
        self._exec("UPDATE deliveries SET attempts = ?, next_at_s = ? WHERE id = ?",
                   (attempts, next_at_s, row_id))

    def reject(self, row_id: int, reason: str) -> None:
        """The receiver refuses this body for good: keep it aside (for an operator), move on."""
        self._exec("UPDATE deliveries SET failed = ? WHERE id = ?", (reason, row_id))

    def depth(self, webhook: str) -> int:
        """Pending deliveries for ``webhook``."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM deliveries WHERE webhook = ? AND "
                                    "failed IS NULL", (webhook,)).fetchone()[0]

    def states(self) -> dict[str, dict]:
        """Every stored bearing state by key."""
        with self._lock:
            rows = self._db.execute("SELECT key, body FROM bearing_states").fetchall()
        return {key: json.loads(body) for key, body in rows}

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple) -> None:
        with self._lock:
            self._db.execute(sql, args)


def alertmanager_payload(event: Mapping[str, Any], receiver: str) -> dict:
    """An Alertmanager webhook v4 body for one event (one alert per group = bearing fault).

    Example:
        >>> e = {"status": "firing", "dedup_key": "ab" * 20, "site": "y", "asset": "c1",
        ...      "bearing": "slew", "fault": "outer_race", "severity": "warning",
        ...      "summary": "s", "dashboard_url": "http://g/d", "started_at": "2026-01-01T00:00Z",
        ...      "ended_at": None}
        >>> alertmanager_payload(e, "tickets")["alerts"][0]["endsAt"]
        '0001-01-01T00:00:00Z'
    """
    labels = {"alertname": "SlewguardBearingFault", "site": event["site"],
              "asset": event["asset"], "bearing": event["bearing"], "state": event["fault"],
              "severity": event["severity"]}
    group = {k: labels[k] for k in ("alertname", "site", "asset", "bearing", "state")}
    annotations = {"summary": event.get("summary", ""), "dashboard": event["dashboard_url"],
                   "dedup_key": event["dedup_key"], "event": event.get("event", "")}
    alert = {"status": event["status"], "labels": labels, "annotations": annotations,
             "startsAt": event["started_at"], "endsAt": event.get("ended_at") or ZERO_TIME,
             "generatorURL": event["dashboard_url"], "fingerprint": event["dedup_key"][:16]}
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group.items())) + "}"
    return {"version": "4", "groupKey": group_key, "truncatedAlerts": 0,
            "status": event["status"], "receiver": receiver, "groupLabels": group,
            "commonLabels": labels, "commonAnnotations": annotations,
            "externalURL": event["dashboard_url"], "alerts": [alert]}


class Renderer:
    """Turns an event into (body bytes, headers) for one webhook's ``format``."""

    def __init__(self, webhook: WebhookConfig, limits: TemplateLimits = DEFAULT_LIMITS) -> None:
        self.webhook, self.limits = webhook, limits
        self._template = None
        if webhook.format == "template":
            from jinja2.sandbox import SandboxedEnvironment  # untrusted operator templates

            self._template = webhook.template_text() or ""
            SandboxedEnvironment().parse(self._template)  # a syntax error fails at start

    def render(self, event: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The HTTP body and headers for ``event``.

        Example:
            >>> from slewguard.service.config.alerts import WebhookConfig
            >>> w = WebhookConfig(name="t", url="http://x", format="template",
            ...                   template='{"key": {{ event.dedup_key | tojson }}}')
            >>> Renderer(w).render({"dedup_key": "k1"})[0]
            b'{"key": "k1"}'
        """
        if self._template is not None:
            body = render_template(self._template, event, self.limits)
        elif self.webhook.format == "alertmanager":
            body = json.dumps(alertmanager_payload(event, self.webhook.name)).encode("utf-8")
        else:
            body = json.dumps(dict(event), sort_keys=True).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "slewguard-alerts",
                   **self.webhook.headers}
        return body, headers


def basic_auth(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its user info, and the HTTP Basic ``Authorization`` header it stands for
    (none without user info); user and password are percent-decoded, a bare user has an empty
    password.

    Example:
        >>> basic_auth("https://bot:p%40ss@tickets.example/hooks?x=1")
        ('https://tickets.example/hooks?x=1', {'Authorization': 'Basic Ym90OnBAc3M='})
        >>> basic_auth("http://tickets.example/hooks")
        ('http://tickets.example/hooks', {})
    """
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, {}
    user, _, password = userinfo.partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    return (urllib.parse.urlunsplit(parts._replace(netloc=host)),
            {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"})


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    """POST ``body``; returns the HTTP status, or 0 when no answer came (refused, timeout).

    User info in ``url`` goes as HTTP Basic auth (urllib would take it for the host)."""
    url, auth = basic_auth(url)
    request = urllib.request.Request(url, data=body, headers={**headers, **auth}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0


class WebhookHealth(SinkHealth):
    """``SinkHealth`` for one webhook: the lines name the webhook and its queue, the error is
    the redacted URL and its answer, ``pending()`` the webhook's queue depth.

    Example:
        >>> t, queued = [0.0], [2]
        >>> h = WebhookHealth("tickets", lambda: t[0], pending=lambda: queued[0])
        >>> h.failed("http_503", "http://***@t/hooks answered 503")  # logs "... is down ..."
        True
        >>> t[0] = 30.0
        >>> h.delivered(1)  # the first of the two queued events: the outage is over
        >>> h.down_since is None
        True
        >>> queued[0] = 1
        >>> h.delivered(1)  # logs "webhook tickets recovered after 30 s ...: 2, still queued: 0"
    """

    DOWN = "webhook %s is down (queued events: %d), retrying with backoff: %s"
    NEW_ERROR = "webhook %s still down after %.0f s, new error: %s"
    REMIND = ("webhook %s still down after %.0f s (failed attempts: %d, queued events: %d); "
              "last error: %s")
    RECOVERED = ("webhook %s recovered after %.0f s (failed attempts: %d); events delivered: "
                 "%d, still queued: %d")
    LOG = log


class WebhookDelivery:
    """Drains ``queue`` to ``webhooks`` on a thread; ``step`` does one pass (tests drive it).

    ``clock`` (monotonic seconds) times the backoff waits and the outages; the queue's own
    (wall) clock stamps rows and times queue-to-delivery. ``send(url, body, headers,
    timeout_s) -> status`` makes the request; ``health`` holds each webhook's ``WebhookHealth``
    by name; ``metrics`` is the alerts' ``AlertMetrics`` (deliveries, template overruns, queue
    depth, delivery time) or None for none.
    """

    def __init__(self, queue: WebhookQueue, webhooks: Sequence[WebhookConfig],
                 metrics: AlertMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic, send: Callable[..., int] = post,
                 idle_s: float = 1.0, limits: TemplateLimits = DEFAULT_LIMITS) -> None:
        self.queue, self.metrics, self.clock, self.send = queue, metrics, clock, send
        self.webhooks = list(webhooks)
        self.renderers = {w.name: Renderer(w, limits) for w in self.webhooks}
        self.health = {w.name: WebhookHealth(w.name, clock, self._depth(w.name))
                       for w in self.webhooks}
        # webhook -> (head row id, clock time of its next attempt); in memory, since a monotonic
        # time means nothing after a restart (which then retries the head at once)
        self._due: dict[str, tuple[int, float]] = {}
        self.idle_s = idle_s
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> float:
        """Try the head of every webhook's queue once; returns seconds until work is due."""
        waits = [self._step_one(w) for w in self.webhooks]
        return min(waits, default=self.idle_s)

    def take_over(self, previous: WebhookDelivery) -> None:
        """Continue the outages of ``previous`` (closed by a reload) for webhooks of the same
        name; call before ``start``.

        Example:
            >>> hooks = [WebhookConfig(name="tickets", url="http://127.0.0.1:9/hooks")]
            >>> old, new = (WebhookDelivery(WebhookQueue(":memory:"), hooks) for _ in "ab")
            >>> old.health["tickets"].failed("connection", "refused")  # logs "... is down"
            True
            >>> new.take_over(old)
            >>> new.health["tickets"].down_since is not None
            True
        """
        for name, health in self.health.items():
            if name in previous.health:
                health.carry_over(previous.health[name])

    def _step_one(self, webhook: WebhookConfig) -> float:
        head = self.queue.head(webhook.name)
        self._gauge(webhook.name)
        if head is None:
            return self.idle_s
        row_id, event, attempts, _, created_s = head
        now = self.clock()
        due_row, due_s = self._due.get(webhook.name, (row_id, now))
        if due_row == row_id and due_s > now:
            return due_s - now
        try:
            body, headers = self.renderers[webhook.name].render(event)
        except Exception as exc:  # a template error: no retry can fix it, do not block the rest
            log.error("webhook %s: cannot render %s event: %s", webhook.name, event.get("event"),
                      redact_urls(str(exc)))
            if isinstance(exc, TemplateOverrunError):
                self._count_overrun(webhook.name, exc.limit)
            self.queue.reject(row_id, "render_error")
            self._count(webhook.name, "rejected")
            return 0.0
        status = self.send(webhook.url, body, headers, webhook.timeout_s)
        health = self.health[webhook.name]
        if 200 <= status < 300:
            health.delivered(1)  # before done: the queue depth still counts this event
            self.queue.done(row_id)
            self._count(webhook.name, "ok")
            self._observe(self.queue.clock() - created_s)  # both wall-clock: spans restarts
            self._gauge(webhook.name)
            return 0.0
        if status == 0 or status >= 500 or status in RETRY_STATUS:
            delay = min(webhook.retry_max_s, webhook.retry_min_s * 2.0 ** min(attempts, 32))
            self._due[webhook.name] = (row_id, now + delay)
            self.queue.retry_at(row_id, attempts + 1, self.queue.clock() + delay)
            self._count(webhook.name, "retry")
            health.failed(f"http_{status}" if status else "connection",
                          f"{redact_url(webhook.url)} answered {status or 'nothing'}")
            return delay
        self.queue.reject(row_id, f"http_{status}")
        self._count(webhook.name, "rejected")
        log.error("webhook %s rejected %s event %s with HTTP %d; set aside", webhook.name,
                  event.get("event"), event.get("dedup_key"), status)
        return 0.0

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; a ``wake`` (new events) cuts a wait short."""
        while not stop.is_set():
            try:
                delay = self.step()
            except Exception:  # a bug or a broken disk: keep the thread, make it visible
                log.exception("webhook delivery step failed")
                delay = self.idle_s
            if delay > 0:
                self.wake.wait(delay)
                self.wake.clear()

    def start(self) -> WebhookDelivery:
        """Run on a daemon thread until ``close``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, args=(self._stop,),
                                            name="webhooks", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (what is undelivered stays queued for the next start)."""
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _depth(self, webhook: str) -> Callable[[], int]:
        return lambda: self.queue.depth(webhook)

    def _count(self, webhook: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries_total.labels(webhook=webhook, outcome=outcome).inc()

    def _count_overrun(self, webhook: str, limit: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_template_overruns_total.labels(webhook=webhook,
                                                                limit=limit).inc()

    def _gauge(self, webhook: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_queue_depth.labels(webhook=webhook).set(
                self.queue.depth(webhook))

    def _observe(self, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.webhook_delivery_seconds.observe(max(0.0, seconds))
