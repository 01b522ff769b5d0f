"""Bearing states from diagnoses: k-of-n voting with hysteresis, gauges, and alert events.

Each window votes for one state: its predicted class, or "unknown" when its confidence is below
``min_confidence`` or the verdict contradicts the kinematics (e.g. "outer_race" with no envelope
peak at BPFO: ``env_bpfo_h1_db`` under ``kinematic_min_db``), or "sensor_fault" when the result
says so (predicted "sensor_fault" or "sensor_fault:<check>", or a truthy ``sensor_fault``
feature). A bearing enters a state
when it has ``enter_votes`` of its last n votes and holds it while it keeps ``exit_votes``
(fewer): without enough evidence for anything else, the state stays. Results already seen (same
sensor, start_ns not newer than the newest seen) do not vote again, since the forwarder retries.

Transitions make events with a stable ``dedup_key`` (sha1 of site/asset/bearing/fault):
"firing" when a fault (or sensor_fault) is entered, "escalated" when its severity rises on the
same key (envelope level or confidence crossing a band, or persistence), "resolved" when the
bearing is healthy again (or another fault replaces it). "unknown" keeps an open alert open.
The sink that feeds this stage from the forwarder, after the outbox, is
``sinks.alerts.AlertSink``: it queues events for every webhook and stores the states in one
SQLite transaction, and exports the states as gauges (``AlertMetrics``).

Example:
    >>> from slewguard.service.config.alerts import AlertsConfig
    >>> from slewguard.service.result import Result
    >>> voter = Voter(AlertsConfig(k=2, n=3, min_confidence=0.5))
    >>> def r(t, cls, db=20.0):
    ...     return Result("y", "c1", "slew", "s1", "m", cls, 0.9, {cls: 0.9},
    ...                   {"env_bpfo_h1_db": db}, 6.0, t, t, "x")
    >>> [e["event"] for t in range(3) for e in voter.feed(r(t, "outer_race"))]
    ['firing']
    >>> [e["event"] for t in range(3, 6) for e in voter.feed(r(t, "healthy"))]
    ['resolved']
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

from slewguard.service.config.alerts import ALERT_STATES, AlertsConfig
from slewguard.service.result import Result
from slewguard.signal.explain import explain
from slewguard.signal.kinematics import FAULT_LINE

STATE_CODES = {"healthy": 0, "unknown": 1, "sensor_fault": 2, "inner_race": 3, "outer_race": 4,
               "rolling_element": 5, "cage": 6, "combined": 7}
ALERTING = ("inner_race", "outer_race", "rolling_element", "cage", "combined", "sensor_fault")
SEVERITIES = ("warning", "major", "critical")
LINES = ("ftf", "bpfo", "bpfi", "bsf2")
FAULT_LINES = {fault: (hz.removesuffix("_hz"),) for fault, hz in FAULT_LINE.items()}
FAULT_LINES["combined"] = ("bpfo", "bpfi", "bsf2")  # any defect line will do
DASHBOARD = "/d/slewguard-bearing/slewguard-bearing"
DELIVERY_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 7200.0)


def dedup_key(site: str, asset: str, bearing: str, fault: str) -> str:
    """Stable id of one bearing's fault: the same ticket across firing, escalation, resolve.

    Example:
        >>> dedup_key("y", "c1", "slew", "cage") == dedup_key("y", "c1", "slew", "cage")
        True
    """
    return hashlib.sha1(f"{site}/{asset}/{bearing}/{fault}".encode()).hexdigest()


def vote(result: Result, config: AlertsConfig) -> str:
    """The state one window votes for (see the module docstring).

    Example:
        >>> from slewguard.service.config.alerts import AlertsConfig
        >>> r = Result("y", "c", "b", "s", "m", "outer_race", 0.95, {}, {"env_bpfo_h1_db": 0.5},
        ...            6.0, 0, 0, "t")
        >>> vote(r, AlertsConfig(kinematic_min_db=3.0))
        'unknown'
    """
    flag = result.features.get("sensor_fault", 0.0)
    if result.predicted.split(":")[0] == "sensor_fault" or (math.isfinite(flag) and flag >= 0.5):
        return "sensor_fault"
    if result.predicted not in ALERT_STATES or not result.confidence >= config.min_confidence:
        return "unknown"
    lines = FAULT_LINES.get(result.predicted)
    if lines and not any(_db(result, line) >= config.kinematic_min_db for line in lines):
        return "unknown"  # NaN (no rpm: no kinematics) compares False: unknown too
    return result.predicted


def _db(result: Result, line: str) -> float:
    return float(result.features.get(f"env_{line}_h1_db", math.nan))


def _ballot(result: Result, state: str) -> dict:
    """What a tracker keeps of one vote: enough for the evidence and the severity bands."""
    levels = [_db(result, line) for line in FAULT_LINES.get(state, ())]
    finite = [x for x in levels if math.isfinite(x)]
    return {"vote": state, "predicted": result.predicted, "start_ns": result.start_ns,
            "confidence": _num(result.confidence), "db": max(finite) if finite else None}


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Tracker:
    """One bearing's votes and state; ``open_fault`` is the alert currently firing."""

    site: str
    asset: str
    bearing: str
    state: str = "unknown"
    open_fault: str | None = None
    level: int = 0
    since_ns: int = 0
    windows_in_state: int = 0
    votes: list[dict] = field(default_factory=list)
    newest_ns: dict[str, int] = field(default_factory=dict)
    last: str | None = None  # Result.to_json() of the newest window

    @property
    def key(self) -> str:
        return f"{self.site}/{self.asset}/{self.bearing}"

    def last_result(self) -> Result | None:
        return Result.from_json(self.last) if self.last else None


class Voter:
    """Per-bearing state machines; ``feed`` returns the events one result causes."""

    def __init__(self, config: AlertsConfig, states: dict[str, dict] | None = None) -> None:
        self.config = config
        self.trackers = {k: Tracker(**v) for k, v in (states or {}).items()}
        self.changes: list[str] = []  # one log line per state change, taken by the sink

    def tracker(self, result: Result) -> Tracker:
        key = f"{result.site}/{result.asset}/{result.bearing}"
        if key not in self.trackers:
            self.trackers[key] = Tracker(result.site, result.asset, result.bearing)
        return self.trackers[key]

    def feed(self, result: Result) -> list[dict]:
        """Vote with ``result`` (unless already seen) and return the events it causes."""
        t = self.tracker(result)
        if result.start_ns <= t.newest_ns.get(result.sensor, -1):
            return []  # a retried batch or an out-of-order old window: it already voted
        t.newest_ns[result.sensor] = result.start_ns
        t.last = result.to_json()
        t.votes = (t.votes + [_ballot(result, vote(result, self.config))])[-self.config.n:]
        new_state = self._next_state(t)
        if new_state != t.state:
            self.changes.append(change_line(t, new_state, result))
        changed, t.state = new_state != t.state, new_state
        t.windows_in_state = 1 if changed else t.windows_in_state + 1
        events = self._transition(t, result) if changed else []
        if t.open_fault is not None and t.open_fault == t.state:
            events += self._escalate(t, result)
        return events

    def _next_state(self, t: Tracker) -> str:
        counts = Counter(v["vote"] for v in t.votes)
        if counts[t.state] >= self.config.exit_votes(t.state):
            return t.state
        ready = [s for s in ALERT_STATES if s != t.state and
                 counts[s] >= self.config.enter_votes(s)]
        return max(ready, key=lambda s: counts[s]) if ready else t.state

    def _transition(self, t: Tracker, result: Result) -> list[dict]:
        new_state = t.state
        if new_state in (t.open_fault, "unknown"):
            return []  # back from unknown to the open fault, or unsure: the ticket stays open
        events: list[dict] = []
        if t.open_fault is not None:
            events.append(self._event(t, "resolved", t.open_fault, result))
            t.open_fault, t.level = None, 0
        if new_state in ALERTING:
            t.open_fault, t.since_ns, t.level = new_state, result.start_ns, self._level(t)
            events.append(self._event(t, "firing", new_state, result))
        return events

    def _escalate(self, t: Tracker, result: Result) -> list[dict]:
        level = self._level(t)
        if level <= t.level:
            return []
        t.level = level
        return [self._event(t, "escalated", t.state, result)]

    def _level(self, t: Tracker) -> int:
        """Severity index: bands crossed by the mean envelope level and confidence of the
        fault's votes, plus one after ``escalate_after_windows`` in the state."""
        if t.state == "sensor_fault" or not t.votes:
            return 0
        mine = [v for v in t.votes if v["vote"] == t.state] or t.votes[-1:]
        db = _mean([v["db"] for v in mine])
        conf = _mean([v["confidence"] for v in mine])
        c = self.config
        level = max(sum(db >= b for b in c.escalate_envelope_db),
                    sum(conf >= b for b in c.escalate_confidence))
        level += t.windows_in_state >= c.escalate_after_windows
        return min(level, len(SEVERITIES) - 1)

    def _event(self, t: Tracker, kind: str, fault: str, result: Result) -> dict:
        severity = "info" if fault == "sensor_fault" else SEVERITIES[t.level]
        # names are topic levels: '&', '#', '%', spaces and non-ASCII must not break the link
        query = urlencode({"var-site": t.site, "var-asset": t.asset, "var-bearing": t.bearing},
                          quote_via=quote)
        link = f"{self.config.dashboard_url.rstrip('/')}{DASHBOARD}?{query}"
        f = result.features
        return {
            "version": "1", "event": kind, "status": "resolved" if kind == "resolved" else
            "firing", "dedup_key": dedup_key(t.site, t.asset, t.bearing, fault),
            "site": t.site, "asset": t.asset, "bearing": t.bearing, "fault": fault,
            "state": t.state,
            "severity": severity, "summary": f"{fault} on {t.key} ({severity})",
            "started_at": _iso(t.since_ns), "at": _iso(result.start_ns),
            "ended_at": _iso(result.start_ns) if kind == "resolved" else None,
            "dashboard_url": link,
            "evidence": {
                "verdict": result.predicted, "confidence": _num(result.confidence),
                "explanation": explain(f),
                "sensor": result.sensor, "model": result.model, "rpm": _num(result.rpm),
                "votes": [dict(v, start=_iso(v["start_ns"])) for v in t.votes],
                "envelope_db": {ln: _num(_db(result, ln)) for ln in LINES},
                "rms": _num(f.get("rms", math.nan)),
                "kurtosis": _num(f.get("kurtosis", math.nan)),
                "crest_factor": _num(f.get("crest_factor", math.nan))},
        }


def change_line(t: Tracker, new_state: str, result: Result) -> str:
    """The log line of a bearing entering ``new_state`` on ``result``: votes and evidence.

    Example:
        >>> t = Tracker("y", "c1", "slew", votes=[{"vote": "outer_race"}] * 3)
        >>> r = Result("y", "c1", "slew", "s1", "m", "outer_race", 0.93, {}, {}, 6.0, 0, 0, "t",
        ...            evidence="BPFO 3 harmonics +18 dB; kurtosis 4.2, crest 6.1")
        >>> change_line(t, "outer_race", r)
        ... # doctest: +NORMALIZE_WHITESPACE
        'bearing y/c1/slew: unknown -> outer_race (3 of the last 3 votes; sensor s1 says
        outer_race at 0.93, 6 rpm: BPFO 3 harmonics +18 dB; kurtosis 4.2, crest 6.1)'
    """
    votes = sum(v["vote"] == new_state for v in t.votes)
    evidence = result.evidence or explain(result.features)
    return (f"bearing {t.key}: {t.state} -> {new_state} ({votes} of the last {len(t.votes)} "
            f"votes; sensor {result.sensor} says {result.predicted} at "
            f"{result.confidence:.2f}, {result.rpm:.0f} rpm: {evidence})")


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _mean(xs: list[float | None]) -> float:
    finite = [x for x in xs if x is not None]
    return sum(finite) / len(finite) if finite else math.nan


class AlertMetrics:
    """The bearing-state gauges and webhook counters, registered once per registry."""

    _by_registry: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __new__(cls, registry: CollectorRegistry) -> AlertMetrics:
        if registry not in cls._by_registry:  # a SIGHUP rebuilds the sinks: reuse the metrics
            self = super().__new__(cls)
            self._build(registry)
            cls._by_registry[registry] = self
        return cls._by_registry[registry]

    def _build(self, registry: CollectorRegistry) -> None:
        bearing = ("site", "asset", "bearing")

        def gauge(name: str, doc: str, labels: tuple[str, ...] = bearing) -> Gauge:
            return Gauge(f"slewguard_{name}", doc, labels, registry=registry)

        self.state = gauge("bearing_state", "1 for the bearing's voted state, 0 for the others.",
                           bearing + ("state",))
        self.state_code = gauge("bearing_state_code", "Voted state as a number: " + ", ".join(
            f"{v} {k}" for k, v in STATE_CODES.items()) + ".")
        self.confidence = gauge("bearing_confidence", "Confidence (0..1) of the newest window.")
        self.probability = gauge("bearing_probability", "Class probabilities of the newest "
                                 "window.", bearing + ("class",))
        self.rms = gauge("bearing_rms", "RMS of the newest window, in the payload's unit.")
        self.kurtosis = gauge("bearing_kurtosis", "Kurtosis of the newest window.")
        self.crest_factor = gauge("bearing_crest_factor", "Crest factor of the newest window.")
        self.envelope_db = gauge("bearing_envelope_db", "Envelope level (h1, dB over the noise "
                                 "floor) at each defect frequency, newest window.",
                                 bearing + ("line",))
        self.alert_events_total = PromCounter(
            "slewguard_alert_events", "Alert events by kind (firing, escalated, resolved).",
            ("event",), registry=registry)
        self.webhook_deliveries_total = PromCounter(
            "slewguard_webhook_deliveries", "Webhook delivery attempts by webhook and outcome "
            "(ok, retry, rejected).", ("webhook", "outcome"), registry=registry)
        self.webhook_template_overruns_total = PromCounter(
            "slewguard_webhook_template_overruns", "Template renders stopped at a limit "
            "(time, size, memory); the event is set aside.", ("webhook", "limit"),
            registry=registry)
        self.webhook_queue_depth = gauge("webhook_queue_depth", "Events waiting for delivery.",
                                         ("webhook",))
        self.webhook_delivery_seconds = Histogram(
            "slewguard_webhook_delivery_seconds", "From an event's queueing to its delivery.",
            buckets=DELIVERY_BUCKETS_S, registry=registry)

    def show(self, t: Tracker) -> None:
        """Set every gauge of bearing ``t`` from its state and newest result."""
        ids = {"site": t.site, "asset": t.asset, "bearing": t.bearing}
        for s in STATE_CODES:
            self.state.labels(state=s, **ids).set(1.0 if s == t.state else 0.0)
        self.state_code.labels(**ids).set(STATE_CODES[t.state])
        r = t.last_result()
        if r is None:
            return
        self.confidence.labels(**ids).set(r.confidence)
        for cls, p in r.probabilities.items():
            if cls in STATE_CODES:  # label values from a fixed set only
                self.probability.labels(**ids, **{"class": cls}).set(p)
        self.rms.labels(**ids).set(r.features.get("rms", math.nan))
        self.kurtosis.labels(**ids).set(r.features.get("kurtosis", math.nan))
        self.crest_factor.labels(**ids).set(r.features.get("crest_factor", math.nan))
        for line in LINES:
            self.envelope_db.labels(**ids, line=line).set(_db(r, line))
