"""The inference pipeline: bounded queue, micro-batch, features, text, model, outbox, ack.

A features thread takes micro-batches (up to ``max_batch`` messages, or whatever arrived within
``max_wait_ms`` of the first), decodes them, groups windows that can share one
``features.extract`` call (same bearing geometry, sample rate and length) and turns features
into texts; an inference thread runs ONE ``predict_proba`` over each batch while the next batch's
features are computed. Results go to the outbox in one durable ``put``; only then is each
message acknowledged. In flight at most: the queue, one batch in each thread and one between.

Trust (service/trust.py): before features, ``quality.check`` runs on the raw windows; a window
with a sensor fault becomes a ``sensor_fault:<check>`` result (counted in
``slewguard_sensor_faults_total{check}``, stored like any result, never shown to the model). The
rest are diagnosed; probabilities are temperature-calibrated when the model card stores a
temperature, and the OOD detector / kinematic thresholds stored with the model turn a verdict into
``unknown`` (``slewguard_unknown_total{reason}``). Every result carries an ``evidence`` line.

Evidence (service/evidence_stage.py, unless ``evidence.enabled`` is false): before the model's
features, each window's rig-invariant defect evidence, the speed fitted to it where the rpm is
nominal (the model's order features then use it), its level over the bearing's commissioning
baseline and the envelope rule's verdict; all of it joins the result's fields and evidence line,
and with ``evidence.verdict: envelope_rule`` the rule's verdict is the result's.

Messages that can never be diagnosed (bad payload, unknown sensor, a window the features reject)
go to the dead-letter topic with a reason, are counted, logged at most once per ``LOG_EVERY_S``
per reason, and acknowledged: a poison message must not loop.

Dead-letter format (both protocols): a JSON envelope ``{"reason", "detail", "topic",
"payload_b64", "payload_bytes", "payload_truncated", "received_at"}`` (only the first 4 KiB of
a message over ``max_payload_bytes``); on MQTT 5 the reason and source topic also travel as user
properties ``reason`` and ``source_topic``, so consumers can filter without parsing.

Backpressure: ``submit`` blocks when the queue is full (see ingest.py); the outbox ``put`` is
retried with backoff while it fails (a full disk stops intake instead of dropping results).

Example:
    >>> pipe = Pipeline(settings, classifier, outbox, sensors.resolve, metrics,   # doctest: +SKIP
    ...                 ack=ingest.ack, dead_letter=letters.send)
    >>> pipe.start(); ingest.start()                                              # doctest: +SKIP
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from slewguard.models.card import features_method
from slewguard.service.config.model import InferenceConfig, ModelConfig
from slewguard.service.evidence_stage import EvidenceStage, WindowEvidence
from slewguard.service.ingest import Inbound
from slewguard.service.metrics import Metrics
from slewguard.service.payload import PayloadError, Window, check_size, decode
from slewguard.service.placement import Placement, WindowError
from slewguard.service.result import Result
from slewguard.service.trust import (
    TrustLayer,
    apply_torch_threads,
    load_trust,
    split_by_quality,
)
from slewguard.signal import evidence, features, numeric, templates, textify
from slewguard.signal.evidence import extract as extract_evidence
from slewguard.signal.quality import QualityVerdict

log = logging.getLogger(__name__)
LOG_EVERY_S = 30.0
OUTBOX_RETRY_MAX_S = 5.0


class Classifier(Protocol):
    """What the pipeline needs from a model (slewguard.models.FaultClassifier fits)."""

    classes: list[str]

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


class ResultStore(Protocol):
    """What the pipeline needs from the outbox."""

    def put(self, results: Sequence[Result]) -> None: ...


@dataclass(frozen=True)
class PipelineSettings:
    """Micro-batching, queue bound and thread counts: the config's ``inference`` section plus
    ``model.torch_threads`` (``from_config``). The defaults are InferenceConfig's, except
    ``torch_threads``: None here leaves torch alone (programmatic use), the daemon's default is 1.

    Example:
        >>> PipelineSettings.from_config(InferenceConfig(), ModelConfig()).torch_threads
        1
    """

    max_batch: int = 16
    max_wait_ms: float = 50.0
    queue_size: int = 256
    queue_bytes: int = 64 * 2**20  # payload bytes queued at most (one larger message passes)
    torch_threads: int | None = None  # torch.set_num_threads in the inference thread
    signal_threads: int | None = None  # numeric.set_threads at start (None: one per core)

    @classmethod
    def from_config(cls, inference: InferenceConfig, model: ModelConfig) -> PipelineSettings:
        """The settings of the config's ``inference`` and ``model`` sections."""
        return cls(max_batch=inference.max_batch, max_wait_ms=inference.max_wait_ms,
                   queue_size=inference.queue_size, queue_bytes=inference.queue_bytes,
                   torch_threads=model.torch_threads,
                   signal_threads=inference.signal_threads)


@dataclass
class _Item:
    inbound: Inbound
    window: Window
    place: Placement
    rpm: float
    evidence: WindowEvidence | None = None


@dataclass
class _Prepared:
    items: list[_Item]
    rows: list[dict]
    texts: list[str]
    values: np.ndarray  # (B, F) the rows in ``names`` order
    names: tuple[str, ...]
    faulty: list[tuple[_Item, QualityVerdict, dict]]  # sensor faults: no model needed


def model_name(classifier: Any) -> str:
    """A short model label: ``.name``, else the card's name or family, else the class name.

    Example:
        >>> model_name(object())
        'object'
    """
    name = getattr(classifier, "name", None)
    if not name:
        card = getattr(classifier, "card", None) or {}
        name = card.get("name") or card.get("family") if isinstance(card, dict) else None
    return str(name or type(classifier).__name__)


class _RateLimitedLog:
    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()  # decode threads reject concurrently

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self.last.get(key, -self.every_s) < self.every_s:
                self.suppressed[key] += 1
                return
            skipped, self.suppressed[key] = self.suppressed[key], 0
            self.last[key] = now
        log.warning(message + " (%d similar suppressed)", *args, skipped)


class Pipeline:
    """Bounded queue plus two worker threads (features, inference); see the module docstring
    for the guarantees.

    ``ack(inbound)`` acknowledges a message; ``dead_letter(inbound, reason, detail)`` publishes
    it to the dead-letter topic; ``resolve(topic, window)`` returns its Placement or raises
    WindowError.
    """

    def __init__(self, settings: PipelineSettings, classifier: Classifier, outbox: ResultStore,
                 resolve: Callable[[str, Window], Placement], metrics: Metrics,
                 ack: Callable[[Inbound], object],
                 dead_letter: Callable[[Inbound, str, str], None],
                 model: str | None = None, trust: TrustLayer | None = None,
                 evidence: EvidenceStage | None = None,
                 max_payload_bytes: int | None = None) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.max_batch = int(settings.max_batch)
        self.max_wait_s = float(settings.max_wait_ms) / 1000.0
        self.queue: queue.Queue[Inbound] = queue.Queue(maxsize=int(settings.queue_size))
        self.queue_bytes = int(settings.queue_bytes)
        self._queued = 0  # payload bytes in self.queue
        self._room = threading.Condition()  # guards _queued; notified when a batch is taken
        self.classifier = classifier
        self.model = model or model_name(classifier)
        self.outbox = outbox
        self.resolve = resolve
        self.metrics = metrics
        self.ack = ack
        self.dead_letter = dead_letter
        self.torch_threads = settings.torch_threads
        self.signal_threads = settings.signal_threads
        self.features_method = features_method(getattr(classifier, "card", None))
        # The model's stored temperature / OOD detector / kinematic thresholds (neutral if none).
        self.trust = trust or TrustLayer(load_trust(classifier))
        self.evidence = evidence  # None: no evidence stage (the model's verdict alone)
        self.rule_decides = evidence is not None and evidence.config.verdict == "envelope_rule"
        # What the model reads: the features' text (t1) or the evidence stage's (t3)
        self.template = templates.template(str(getattr(
            classifier, "template_version", textify.TEMPLATE_VERSION)))
        self.reads_evidence = self.template.reads == "evidence"
        if self.reads_evidence and evidence is None:
            raise ValueError(f"model {self.model} reads the evidence stage (textify template "
                             f"{self.template.version!r}) but evidence.enabled is false: set "
                             "evidence.enabled: true, or use a model of template 't1'")
        self._closing = threading.Event()  # refuse new messages, drain the queue
        self._abort = threading.Event()  # stop now, even mid-retry
        # Features of batch k+1 overlap inference of batch k (numpy/scipy and torch both
        # release the GIL); one prepared batch may wait between the two threads.
        self._handoff: queue.Queue[_Prepared | None] = queue.Queue(maxsize=1)
        self._threads: list[threading.Thread] = []
        self._warn = _RateLimitedLog(LOG_EVERY_S)
        self.batches = 0

    def start(self) -> None:
        """Start the two worker threads (features, then inference + store + ack)."""
        apply_torch_threads(self.torch_threads)
        numeric.set_threads(self.signal_threads)
        self._threads = [
            threading.Thread(target=self._run_features, name="pipeline-features", daemon=True),
            threading.Thread(target=self._run_inference, name="pipeline-inference", daemon=True)]
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        """Whether both worker threads run."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def submit(self, inbound: Inbound) -> bool:
        """Queue a message, blocking while the queue is full (``queue_size`` messages or
        ``queue_bytes`` payload bytes); False when closing (not queued).

        A message refused while closing stays unacknowledged: the broker redelivers it. One
        over ``max_payload_bytes`` is dead-lettered here, never queued (True: it is done).
        """
        if not self._closing.is_set() and self._oversize(inbound):
            return True
        size = len(inbound.payload)
        while not self._closing.is_set():
            with self._room:  # every producer puts under it: full() cannot go stale
                if self.queue.full() or (self._queued and
                                         self._queued + size > self.queue_bytes):
                    self._room.wait(timeout=0.1)  # until a batch is taken
                    continue
                self.queue.put_nowait(inbound)
                self._queued += size
            self.metrics.queue_depth.set(self.queue.qsize())
            return True
        return False

    def _taken(self, batch: list[Inbound]) -> None:
        """Give the batch's bytes back to the budget."""
        with self._room:
            self._queued -= sum(len(m.payload) for m in batch)
            self._room.notify_all()

    def _oversize(self, inbound: Inbound) -> bool:
        """Reject (dead-letter, count, ack) a message over the byte budget; True if it was."""
        if self.max_payload_bytes is None:
            return False
        try:
            check_size(len(inbound.payload), self.max_payload_bytes)
        except PayloadError as exc:
            self._reject(inbound, exc.reason, str(exc))
            return True
        return False

    def stop(self, drain: bool = True, timeout_s: float = 30.0) -> None:
        """Stop taking messages; with ``drain`` process what is queued first."""
        self._closing.set()
        if not drain:
            self._abort.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self._abort.set()
            for thread in self._threads:
                thread.join()

    def _run_features(self) -> None:
        try:
            while not self._abort.is_set():
                batch = self._take()
                if batch:
                    prepared = self._prepare(batch)
                    while prepared is not None and not self._abort.is_set():
                        try:
                            self._handoff.put(prepared, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                elif self._closing.is_set():
                    return
        finally:
            self._handoff.put(None)  # the inference thread has taken the last batch or aborts

    def _run_inference(self) -> None:
        apply_torch_threads(self.torch_threads)  # OpenMP settings are per thread
        while (prepared := self._handoff.get()) is not None:
            if self._abort.is_set():
                continue
            try:
                self._finish(prepared)
            except Exception:  # keep serving; these messages stay unacked until a reconnect
                log.exception("batch of %d windows failed after inference", len(prepared.items))

    def _take(self) -> list[Inbound]:
        try:
            batch = [self.queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self.queue.get(timeout=remaining) if remaining > 0
                             else self.queue.get_nowait())
            except queue.Empty:
                break
        self._taken(batch)
        self.metrics.queue_depth.set(self.queue.qsize())
        return batch

    def process(self, batch: list[Inbound]) -> list[Result]:
        """Diagnose ``batch`` in the calling thread, store the results, ack; returns them."""
        prepared = self._prepare(batch)
        return [] if prepared is None else self._finish(prepared)

    def _prepare(self, batch: list[Inbound]) -> _Prepared | None:
        """Decode, reject, check quality, featurise and textify; None when nothing is left."""
        self.metrics.batch_windows.observe(len(batch))
        decoded = numeric.map_rows(lambda i: self._decode(batch[i]), len(batch))  # GIL-free
        items = [item for item in decoded if item is not None]
        started = time.perf_counter()
        clean, faulty = split_by_quality(self.trust, items, self._warn.warning)
        self.metrics.stage_seconds.labels(stage="quality").observe(time.perf_counter() - started)
        rows, texts, kept, values = self._featurise(clean)
        names = tuple(features.FEATURE_NAMES if not rows else rows[0])
        _release([*kept, *(item for item, _, _ in faulty)])
        return _Prepared(kept, rows, texts, values, names, faulty) if kept or faulty else None

    def _finish(self, prepared: _Prepared) -> list[Result]:
        """One predict_proba over the batch, one durable outbox put, then the acks."""
        kept, reasons, results = self._diagnose(prepared)
        kept += [item for item, _, _ in prepared.faulty]
        results += [self._fault_result(item, v, row) for item, v, row in prepared.faulty]
        if not results or not self._store(results):
            return []
        for reason in filter(None, reasons):
            self.metrics.unknown_total.labels(reason=reason).inc()
        for item, result in zip(kept, results, strict=True):
            self._done(item, result)
        self.batches += 1
        return results

    def _diagnose(self, prepared: _Prepared) -> tuple[list[_Item], list[str], list[Result]]:
        """Model, then trust: (items, unknown reasons, results); nothing if the model failed."""
        kept, rows = prepared.items, prepared.rows
        if not kept:
            return [], [], []
        started = time.perf_counter()
        try:
            proba = np.asarray(self.classifier.predict_proba(prepared.texts), dtype=np.float64)
        except Exception:  # a model failure is not the messages' fault: leave them unacked
            log.exception("inference failed on a batch of %d; messages stay unacknowledged",
                          len(kept))
            self.metrics.windows_rejected_total.labels(reason="inference_error").inc(len(kept))
            return [], [], []
        self.metrics.stage_seconds.labels(stage="inference").observe(time.perf_counter() - started)
        started = time.perf_counter()
        judged = self.trust.judge(list(self.classifier.classes), proba, prepared.names,
                                  prepared.values, rows, [_bearing_key(i.place) for i in kept],
                                  evidence_rows=self.reads_evidence)
        results = [self._result(item, row, verdict, p, evidence) for item, row, (
            verdict, p, _, evidence) in zip(kept, rows, judged, strict=True)]
        self.metrics.stage_seconds.labels(stage="trust").observe(time.perf_counter() - started)
        return list(kept), [reason for _, _, reason, _ in judged], results

    def _decode(self, inbound: Inbound) -> _Item | None:
        if self._oversize(inbound):  # submit() checked already; process() callers did not
            return None
        started = time.perf_counter()
        try:
            window = decode(inbound.payload)
            place = self.resolve(inbound.topic, window)
            rpm = next((r for r in (place.rpm, window.rpm, place.fallback_rpm)
                        if r is not None and np.isfinite(r)), None)
            if rpm is None:
                raise WindowError("missing_rpm", f"window from {inbound.topic} has no rpm and the "
                               "sensor config sets none: set rpm_source fixed with an rpm")
        except (PayloadError, WindowError) as exc:
            self._reject(inbound, exc.reason, str(exc))
            return None
        finally:
            self.metrics.stage_seconds.labels(stage="decode").observe(time.perf_counter() - started)
        return _Item(inbound, window, place, float(rpm))

    def _featurise(self, items: list[_Item]) -> tuple[list[dict], list[str], list[_Item],
                                                      np.ndarray]:
        started = time.perf_counter()
        if self.evidence is not None and items:
            self._evidence(items)
        found = self._evidence_rows(items) if self.reads_evidence else self._feature_rows(items)
        rows = [row for _, row, _ in found]
        texts = [self.template.textify(row) for row in rows]
        kept = [item for item, _, _ in found]
        if items:
            self.metrics.stage_seconds.labels(stage="features").observe(
                time.perf_counter() - started)
        values = np.stack([vector for _, _, vector in found]) if found else np.zeros(
            (0, 0), np.float32)
        return rows, texts, kept, values

    def _evidence_rows(self, items: list[_Item]) -> list[tuple[_Item, dict, np.ndarray]]:
        """A t3 model's input: each window's evidence row, no features to compute."""
        found = []
        for item in items:
            if item.evidence is None:
                self._reject(item.inbound, "evidence", "the evidence stage could not read the "
                             f"window from {item.inbound.topic}")
                continue
            row = item.evidence.fields
            found.append((item, row, np.fromiter(row.values(), np.float32, len(row))))
        return found

    def _feature_rows(self, items: list[_Item]) -> list[tuple[_Item, dict, np.ndarray]]:
        """A t1 model's input: features of each group of like windows, in one call per group."""
        groups: dict[tuple, list[_Item]] = defaultdict(list)
        for item in items:
            w = item.window
            groups[(item.place.geometry, w.sample_rate_hz, w.samples.size)].append(item)
        return [found for group in groups.values() for found in self._extract(group)]

    def _evidence(self, items: list[_Item]) -> None:
        """The evidence stage: each window's own evidence and level on the worker pool (FFTs
        and reductions release the GIL), then baseline and rule in arrival order. A window it
        cannot read keeps the model path."""
        def one(i: int) -> tuple[dict, tuple[float, float]] | str:
            w, p = items[i].window, items[i].place
            try:
                return (extract_evidence(w.samples, w.sample_rate_hz, p.geometry, items[i].rpm,
                                         p.rpm_uncertainty), evidence.level(w.samples))
            except ValueError as exc:
                return str(exc)
        for item, found in zip(items, numeric.map_rows(one, len(items)), strict=True):
            if isinstance(found, str):
                self._warn.warning("evidence", "no evidence for %s: %s", item.inbound.topic,
                                   found)
                continue
            row, levels = found
            item.evidence = self.evidence.judge(_sensor_key(item.place), levels, row, item.rpm,
                                                item.place.rpm_uncertainty)
            item.rpm = item.evidence.rpm

    def _extract(self, group: list[_Item]) -> list[tuple[_Item, dict, np.ndarray]]:
        """Features of one group in one call; on failure, window by window to isolate the bad."""
        try:
            table = _extract_table(group, self.features_method)
            return [(item, table.row(i), table.values[i]) for i, item in enumerate(group)]
        except ValueError as exc:
            if len(group) == 1:
                self._reject(group[0].inbound, "features", str(exc))
                return []
        return [pair for item in group for pair in self._extract([item])]

    def _result(self, item: _Item, row: dict, verdict: str, proba: np.ndarray,
                evidence: str) -> Result:
        classes = list(self.classifier.classes)
        w, p = item.window, item.place
        found = {k: float(v) for k, v in row.items()}
        if item.evidence is not None:
            found.update(item.evidence.fields)
            rule = f"envelope rule: {item.evidence.verdict} ({item.evidence.reason})"
            if self.rule_decides and verdict != "unknown":
                verdict, evidence = item.evidence.verdict, f"{rule}; model: {evidence}"
            else:
                evidence = f"{evidence}; {rule}"
        return Result(
            site=p.site, asset=p.asset, bearing=p.bearing, sensor=p.sensor, model=self.model,
            predicted=verdict, confidence=float(proba.max()),
            probabilities={c: float(v) for c, v in zip(classes, proba, strict=True)},
            features=found, rpm=item.rpm, seq=int(w.seq),
            start_ns=int(w.start_ns), topic=item.inbound.topic, evidence=evidence)

    def _fault_result(self, item: _Item, verdict: QualityVerdict, row: dict) -> Result:
        """A sensor-fault result: raw statistics, no model probabilities, never a bearing fault."""
        w, p = item.window, item.place
        return Result(
            site=p.site, asset=p.asset, bearing=p.bearing, sensor=p.sensor, model=self.model,
            predicted=f"sensor_fault:{verdict.faults[0]}", confidence=float("nan"),
            probabilities={}, features=row, rpm=item.rpm, seq=int(w.seq),
            start_ns=int(w.start_ns), topic=item.inbound.topic,
            evidence=self.trust.sensor_fault_evidence(verdict), quality=verdict.faults)

    def _store(self, results: list[Result]) -> bool:
        """Durably store; retry with backoff while the outbox fails (unless aborting)."""
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                self.outbox.put(results)
            except Exception as exc:  # full disk, locked db: keep the messages unacked, retry
                self._warn.warning("outbox", "outbox put of %d results failed: %s; retrying",
                                   len(results), exc)
                if self._abort.wait(delay):
                    return False
                delay = min(delay * 2, OUTBOX_RETRY_MAX_S)
                continue
            self.metrics.stage_seconds.labels(stage="outbox").observe(time.perf_counter() - started)
            return True

    def _done(self, item: _Item, result: Result) -> None:
        self.ack(item.inbound)
        m = self.metrics
        m.windows_processed_total.inc()
        m.results_total.labels(predicted=result.predicted).inc()
        for check in result.quality:
            m.sensor_faults_total.labels(check=check).inc()
        m.last_window_timestamp_seconds.labels(
            site=result.site, asset=result.asset, bearing=result.bearing).set(result.start_ns / 1e9)
        m.stage_seconds.labels(stage="end_to_end").observe(time.monotonic() -
                                                           item.inbound.received_s)

    def _reject(self, inbound: Inbound, reason: str, detail: str) -> None:
        self.metrics.windows_rejected_total.labels(reason=reason).inc()
        self._warn.warning(reason, "rejected %s (%s): %s", inbound.topic, reason, detail)
        try:
            self.dead_letter(inbound, reason, detail)
        except Exception as exc:  # still ack: a poison message must not loop
            log.error("dead-letter publish failed for %s: %s", inbound.topic, exc)
        self.ack(inbound)


_NO_SAMPLES = np.zeros(0, np.float32)


def _release(items: list[_Item]) -> None:
    """Drop what no later stage reads (the payload bytes, the decoded samples), so the two
    batches in flight after the features hold their results, not their windows: the message
    is acked by its id and, should storing fail, redelivered by the broker."""
    for item in items:
        item.inbound = replace(item.inbound, payload=b"")
        item.window = replace(item.window, samples=_NO_SAMPLES)


def _bearing_key(place: Placement) -> str:
    return f"{place.site}/{place.asset}/{place.bearing}"


def _sensor_key(place: Placement) -> str:
    return f"{place.site}/{place.asset}/{place.bearing}/{place.sensor}"


def _extract_table(group: list[_Item], method: str) -> features.FeatureTable:
    first = group[0]
    windows = [item.window.samples for item in group]  # read in place: no (B, N) copy
    rpm = np.array([item.rpm for item in group], dtype=np.float64)  # (B,)
    return features.extract(windows, first.window.sample_rate_hz, first.place.geometry, rpm=rpm,
                            method=method)
