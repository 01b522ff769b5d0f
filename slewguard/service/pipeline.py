"""The inference pipeline: bounded queue, micro-batch, features, text, model, outbox, ack.

A features thread takes micro-batches (up to ``max_batch`` messages, or whatever arrived within
``max_wait_ms`` of the first), decodes them, groups windows that can share one
``features.extract`` call (same bearing geometry, sample rate and length) and turns features
into texts; an inference thread runs ONE ``predict_proba`` over each batch while the next batch's
features are computed. Results go to the outbox in one durable ``put``; only then is each
message acknowledged. In flight at most: the queue, one batch in each thread and one between.
This module runs the two threads, decodes, stores, acks and dead-letters; the stages are
batch_queue.py (the bounded queue), features_stage.py (evidence rows or grouped features),
inference_stage.py (model and trust) and batch.py (the windows in flight, their results).

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
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from slewguard.models.card import features_method
from slewguard.models.runtimes import Classifier
from slewguard.service.batch import PreparedBatch, WindowItem, fault_result, release
from slewguard.service.batch_queue import BatchQueue
from slewguard.service.config.model import InferenceConfig, ModelConfig
from slewguard.service.evidence_stage import EvidenceStage
from slewguard.service.features_stage import evidence_rows, feature_rows, run_evidence
from slewguard.service.inference_stage import InferenceStage, model_name
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
from slewguard.signal import features, numeric, templates, textify

log = logging.getLogger(__name__)
LOG_EVERY_S = 30.0
OUTBOX_RETRY_MAX_S = 5.0
FEATURES_THREAD, INFERENCE_THREAD = "pipeline-features", "pipeline-inference"  # thread names


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
        self.queue = BatchQueue(int(settings.queue_size), int(settings.queue_bytes),
                                int(settings.max_batch), float(settings.max_wait_ms) / 1000.0,
                                metrics.queue_depth)
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
        self.inference = InferenceStage(classifier, self.trust, metrics, model=self.model,
                                        rule_decides=self.rule_decides,
                                        reads_evidence=self.reads_evidence)
        self._closing = threading.Event()  # refuse new messages, drain the queue
        self._abort = threading.Event()  # stop now, even mid-retry
        # Features of batch k+1 overlap inference of batch k (numpy/scipy and torch both
        # release the GIL); one prepared batch may wait between the two threads.
        self._handoff: queue.Queue[PreparedBatch | None] = queue.Queue(maxsize=1)
        self._threads: list[threading.Thread] = []
        self._warn = _RateLimitedLog(LOG_EVERY_S)
        self.batches = 0

    def start(self) -> None:
        """Start the two worker threads (features, then inference + store + ack)."""
        apply_torch_threads(self.torch_threads)
        numeric.set_threads(self.signal_threads)
        self._threads = [
            threading.Thread(target=self._run_features, name=FEATURES_THREAD, daemon=True),
            threading.Thread(target=self._run_inference, name=INFERENCE_THREAD, daemon=True)]
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        """Whether both worker threads run."""
        return not self.stopped_threads()

    def stopped_threads(self) -> list[str]:
        """The names of the worker threads not running: both before ``start()``, after
        ``stop()``, or those that died (the readiness check names them)."""
        if not self._threads:
            return [FEATURES_THREAD, INFERENCE_THREAD]
        return [t.name for t in self._threads if not t.is_alive()]

    def submit(self, inbound: Inbound) -> bool:
        """Queue a message, blocking while the queue is full (``queue_size`` messages or
        ``queue_bytes`` payload bytes); False when closing (not queued).

        A message refused while closing stays unacknowledged: the broker redelivers it. One
        over ``max_payload_bytes`` is dead-lettered here, never queued (True: it is done).
        """
        if not self._closing.is_set() and self._oversize(inbound):
            return True
        return self.queue.put(inbound, self._closing)

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
                batch = self.queue.take()
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

    def process(self, batch: list[Inbound]) -> list[Result]:
        """Diagnose ``batch`` in the calling thread, store the results, ack; returns them."""
        prepared = self._prepare(batch)
        return [] if prepared is None else self._finish(prepared)

    def _prepare(self, batch: list[Inbound]) -> PreparedBatch | None:
        """Decode, reject, check quality, featurise and textify; None when nothing is left."""
        self.metrics.batch_windows.observe(len(batch))
        decoded = numeric.map_rows(lambda i: self._decode(batch[i]), len(batch))  # GIL-free
        items = [item for item in decoded if item is not None]
        started = time.perf_counter()
        clean, faulty = split_by_quality(self.trust, items, self._warn.warning)
        self.metrics.stage_seconds.labels(stage="quality").observe(time.perf_counter() - started)
        rows, texts, kept, values = self._featurise(clean)
        names = tuple(features.FEATURE_NAMES if not rows else rows[0])
        release([*kept, *(item for item, _, _ in faulty)])
        return PreparedBatch(kept, rows, texts, values, names, faulty) if kept or faulty else None

    def _finish(self, prepared: PreparedBatch) -> list[Result]:
        """One predict_proba over the batch, one durable outbox put, then the acks."""
        kept, reasons, results = self.inference.diagnose(prepared)
        kept += [item for item, _, _ in prepared.faulty]
        results += [fault_result(item, v, row, model=self.model,
                                 evidence=self.trust.sensor_fault_evidence(v))
                    for item, v, row in prepared.faulty]
        if not results or not self._store(results):
            return []
        for reason in filter(None, reasons):
            self.metrics.unknown_total.labels(reason=reason).inc()
        for item, result in zip(kept, results, strict=True):
            self._done(item, result)
        self.batches += 1
        return results

    def _decode(self, inbound: Inbound) -> WindowItem | None:
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
        return WindowItem(inbound, window, place, float(rpm))

    def _featurise(self, items: list[WindowItem]
                   ) -> tuple[list[dict], list[str], list[WindowItem], np.ndarray]:
        """The features stage (features_stage.py) and the text the model reads."""
        started = time.perf_counter()
        if self.evidence is not None and items:
            run_evidence(self.evidence, items, self._warn.warning)
        found = (evidence_rows(items, self._reject) if self.reads_evidence
                 else feature_rows(items, self.features_method, self._reject))
        rows = [row for _, row, _ in found]
        texts = [self.template.textify(row) for row in rows]
        kept = [item for item, _, _ in found]
        if items:
            self.metrics.stage_seconds.labels(stage="features").observe(
                time.perf_counter() - started)
        values = np.stack([vector for _, _, vector in found]) if found else np.zeros(
            (0, 0), np.float32)
        return rows, texts, kept, values

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

    def _done(self, item: WindowItem, result: Result) -> None:
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

