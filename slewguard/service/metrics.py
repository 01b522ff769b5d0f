"""Every Prometheus metric the daemon exports, in one object that is passed to each part.

One prefix (``slewguard_``), base units (seconds, bytes), counters end in ``_total``, latencies are
histograms, and label values come from small fixed sets (reasons, stages, classes, sinks), never
from window ids. Each ``Metrics`` owns its registry, so tests and several daemons in one process
never collide; the exposition is what ``promtool check metrics`` lints.

Example:
    >>> m = Metrics()
    >>> m.windows_received_total.inc()
    >>> b"slewguard_windows_received_total 1.0" in m.exposition()
    True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "slewguard"
STAGES = ("decode", "quality", "features", "inference", "trust", "outbox", "end_to_end")
# Seconds: 1 ms to 1 min; a 10 s window at 25.6 kHz takes tens of ms, a backlog takes seconds.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                     10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The daemon's metrics, registered in ``registry`` (a fresh one when None).

    Example:
        >>> m = Metrics()
        >>> m.stage_seconds.labels(stage="inference").observe(0.02)
        >>> m.set_build_info(version="0.1.0", model="tiny")
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._build_pipeline_metrics()
        self._build_transport_metrics()

    def _counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, namespace=PREFIX, registry=self.registry)

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, namespace=PREFIX, registry=self.registry)

    def _build_pipeline_metrics(self) -> None:
        self.windows_received_total = self._counter(
            "windows_received", "MQTT messages taken from the broker into the pipeline.")
        self.windows_processed_total = self._counter(
            "windows_processed", "Windows diagnosed and stored in the outbox.")
        self.windows_rejected_total = self._counter(
            "windows_rejected", "Windows that could not be diagnosed, by reason.", ("reason",))
        self.dead_letters_total = self._counter(
            "dead_letters", "Messages published to the dead-letter topic, by reason.", ("reason",))
        self.results_total = self._counter(
            "results", "Diagnoses made, by predicted class.", ("predicted",))
        self.sensor_faults_total = self._counter(
            "sensor_faults", "Windows failing a data-quality check, by check (a window failing "
            "two checks counts in both); they get a sensor_fault verdict, never a bearing fault.",
            ("check",))
        self.unknown_total = self._counter(
            "unknown", "Model verdicts overruled to 'unknown', by reason (ood: outside the "
            "training data; kinematic: a fault class without its defect-frequency line).",
            ("reason",))
        self.queue_depth = self._gauge(
            "queue_depth", "Messages waiting in the pipeline queue.")
        self.batch_windows = Histogram(
            "batch_windows", "Windows per inference micro-batch.", namespace=PREFIX,
            buckets=BATCH_BUCKETS, registry=self.registry)
        self.stage_seconds = Histogram(
            "stage_duration_seconds", "Time spent per pipeline stage; end_to_end runs from "
            "MQTT receipt to acknowledgement.", ("stage",), namespace=PREFIX,
            buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.last_window_timestamp_seconds = self._gauge(
            "last_window_timestamp_seconds", "Start time (UTC epoch) of the newest diagnosed "
            "window per bearing.", ("site", "asset", "bearing"))
        self.build_info = self._gauge(
            "build_info", "Always 1; labels carry the slewguard version and the loaded model.",
            ("version", "model"))
        self.model_loaded = self._gauge("model_loaded", "1 when a classifier is loaded.")

    def _build_transport_metrics(self) -> None:
        self.mqtt_connected = self._gauge("mqtt_connected", "1 while connected to the broker.")
        self.mqtt_connects_total = self._counter(
            "mqtt_connects", "Successful MQTT (re)connections.")
        self.mqtt_connect_failures_total = self._counter(
            "mqtt_connect_failures", "Failed MQTT connect attempts of the ingest connection, by "
            "reason (tls, refused, timeout, dns, other).", ("reason",))
        self.mqtt_session_takeovers_total = self._counter(
            "mqtt_session_takeovers", "Sessions of shared-subscription peers gone down that this "
            "daemon took over, by outcome (drained, empty, interrupted, refused, unreachable, "
            "stopped).", ("outcome",))
        self.mqtt_inflight_messages = self._gauge(
            "mqtt_inflight_messages", "Messages received from the broker but not yet acknowledged.")
        self.outbox_depth = self._gauge("outbox_depth", "Results in the outbox not yet forwarded.")
        self.outbox_oldest_age_seconds = self._gauge(
            "outbox_oldest_age_seconds", "Age of the oldest unforwarded result (0 when empty).")
        self.outbox_size_bytes = self._gauge("outbox_size_bytes", "Outbox database size on disk.")
        self.outbox_set_aside_total = self._counter(
            "outbox_set_aside", "Results set aside after a permanent sink error, by reason.",
            ("reason",))
        self.outbox_dropped_total = self._counter(
            "outbox_dropped", "Results deleted unsent to stay under the outbox quota, by what "
            "(set_aside rows, or pending rows under when_full=drop_oldest).", ("reason",))
        self.sink_writes_total = self._counter(
            "sink_writes", "Sink write attempts by sink and outcome (ok, retry, permanent).",
            ("sink", "outcome"))
        self.sink_write_seconds = Histogram(
            "sink_write_duration_seconds", "Time per sink write call.", ("sink",), namespace=PREFIX,
            buckets=LATENCY_BUCKETS_S, registry=self.registry)

    def set_build_info(self, version: str, model: str) -> None:
        """Publish the one ``build_info`` series (clearing any previous model's).

        Example:
            >>> Metrics().set_build_info("0.1.0", "minilm-pruned")
        """
        self.build_info.clear()
        self.build_info.labels(version=version, model=model).set(1)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format, as ``/metrics`` serves it.

        Example:
            >>> b"slewguard_queue_depth" in Metrics().exposition()
            True
        """
        return generate_latest(self.registry)


def gauge_value(gauge: Gauge) -> float:
    """The present value of an unlabelled ``gauge``, read from the gauge object itself.

    Read it as ``gauge_value(metrics.queue_depth)``, not by its exported name through the
    registry: a misspelt attribute is an AttributeError, a misspelt name a silent None.

    Example:
        >>> m = Metrics(); m.queue_depth.set(3)
        >>> gauge_value(m.queue_depth), gauge_value(m.mqtt_connected)
        (3.0, 0.0)
    """
    samples = [s for family in gauge.collect() for s in family.samples]
    if len(samples) != 1 or samples[0].labels:
        raise ValueError(f"gauge {gauge!r} has labels: read one series of it, not the gauge")
    return samples[0].value


def histogram_totals(histogram: Histogram, **labels: str) -> tuple[float, float]:
    """(sum, count) of what ``histogram`` observed under ``labels``; (0.0, 0.0) before the
    first observation. Like ``gauge_value``, it reads the histogram object, not a name.

    Example:
        >>> m = Metrics(); m.stage_seconds.labels(stage="inference").observe(0.02)
        >>> histogram_totals(m.stage_seconds, stage="inference")
        (0.02, 1.0)
        >>> histogram_totals(m.stage_seconds, stage="decode")
        (0.0, 0.0)
    """
    totals = {"_sum": 0.0, "_count": 0.0}
    for family in histogram.collect():
        for s in family.samples:
            suffix = s.name[len(family.name):]
            if suffix in totals and s.labels == labels:
                totals[suffix] = s.value
    return totals["_sum"], totals["_count"]
