"""The App: builds the daemon's parts from a ServiceConfig, starts them in order, stops in reverse.

Start: first every check ``check-config`` makes (``preflight.start_problems``: model directory,
writable files, webhook templates), so a bad config fails in a second with one line naming its
key (``StartError``), then in order: outbox, metrics + HTTP (a port in use fails before the
model loads), model, forwarder (outbox -> sinks), pipeline, MQTT ingest, the status line
(``status``: one INFO line every ``logging.status_interval_s``).
Stop (on ``stop()`` or SIGTERM, via one shared stop event), in reverse: the pipeline stops taking
messages and drains its queue (every drained result is stored and acked on the still-open MQTT
connection), the forwarder flushes the outbox to the sinks, then ingest publishes "offline" and
disconnects, the HTTP server stops and the outbox closes. Whatever a sink has not taken stays in
the outbox for the next start. SIGHUP re-reads the config file and rebuilds the sinks (``sinks``
entries, alert settings and webhooks; the forwarder restarts) without touching the MQTT session;
a sink or webhook outage that spans the reload stays one outage (one warning, one recovery).
Start and reload build the sinks the same way, through the sink registry (``sinks.registry``):
alerts and mqtt from their sections, then one sink per ``sinks`` entry, by its type.

Two broker connections: the ingest one (persistent session, manual acks, status + Last Will,
dead letters) and a clean publish-only one for results, so that a full pipeline queue, which
parks the ingest connection's network thread, never stops the outbox from draining.

Example (a demo starts the daemon in-process in three lines):
    >>> app = App(load_config("deploy/slewguard.example.yaml"))   # doctest: +SKIP
    >>> app.start()                                                # doctest: +SKIP
    >>> app.stop()                                                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slewguard import __version__
from slewguard.service.config import ServiceConfig, load_config
from slewguard.service.deadletter import DeadLetters
from slewguard.service.evidence_stage import evidence_stage
from slewguard.service.health import HealthServer
from slewguard.service.inference_stage import model_name
from slewguard.service.ingest import Ingest
from slewguard.service.metrics import Metrics
from slewguard.service.mqtt_client import publisher_client
from slewguard.service.outbox import Outbox
from slewguard.service.pipeline import Pipeline, PipelineSettings
from slewguard.service.placement import SensorMap
from slewguard.service.preflight import StartError, bind_problem, start_problems
from slewguard.signal import fft

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from slewguard.models.runtimes import Classifier
    from slewguard.service.ingest import Inbound
    from slewguard.service.sinks import Sink
    from slewguard.service.sinks.forwarder import Forwarder

log = logging.getLogger(__name__)
FORWARDER_IDLE_S = 0.2  # longest idle wait when no sink sets the pace (a put wakes it at once)
FLUSH_TIMEOUT_S = 10.0  # on stop, forward the outbox for at most this long


def load_classifier(config: ServiceConfig) -> Classifier:
    """The classifier named by ``config.model`` (``model.path``, or the shipped model
    ``model.shipped``) in the runtime ``model.runtime`` picks (``models.runtimes``).

    The onnx runtime imports neither torch nor transformers; each runtime reads ``device`` its
    own way (``auto``: the CPU for onnx, cuda where torch sees one for torch).
    """
    from slewguard.models.runtimes import choose_runtime, load
    from slewguard.models.shipped import shipped_model_dir

    c = config.model
    path = c.path if c.path is not None else shipped_model_dir(c.shipped)
    runtime = choose_runtime(path, c.runtime, c.device, c.dtype)
    if c.path is None:
        from slewguard.models.shipped import load_default

        return load_default(device=c.device, dtype=c.dtype, name=c.shipped, runtime=runtime,
                            threads=c.onnx_threads)
    return load(c.path, device=c.device, dtype=c.dtype, runtime=runtime, threads=c.onnx_threads)


class App:
    """The running daemon. ``classifier`` and ``metrics`` may be injected (tests, demos)."""

    def __init__(self, config: ServiceConfig, classifier: Classifier | None = None,
                 metrics: Metrics | None = None, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = metrics or Metrics()
        self.classifier = classifier
        self.model_label = ""
        self.stop_event = threading.Event()
        self.outbox: Outbox | None = None
        self.http: HealthServer | None = None
        self.ingest: Ingest | None = None
        self.pipeline: Pipeline | None = None
        self._forwarder: Forwarder | None = None
        self._forwarder_stop = threading.Event()
        self._forwarder_thread: threading.Thread | None = None
        self._results_client: mqtt.Client | None = None
        self._stoppers: list[tuple[str, Callable[[], None]]] = []

    @property
    def http_port(self) -> int:
        """The bound metrics/probe port (useful with http.port 0)."""
        assert self.http is not None, "start() the App first"
        return self.http.port

    def start(self) -> App:
        """Start every part in order; on failure, stop what already started and re-raise.

        Raises ``StartError`` (a ValueError: one line per cause) when ``check-config`` would
        refuse the config, the outbox cannot be opened or the HTTP port cannot be bound.
        """
        problems = start_problems(self.config, model=self.classifier is None)
        if problems:
            raise StartError(problems)
        try:
            self._start_outbox()
            self._start_http()
            self._start_model()
            self._start_forwarder()
            self._start_pipeline()
            self._start_ingest()
            self._start_status()
        except BaseException:
            self.stop()
            raise
        log.info("slewguard %s serving site %s with model %s", __version__, self.config.site,
                 self.model_label)
        return self

    def stop(self) -> None:
        """Stop every started part in reverse order (idempotent)."""
        self.stop_event.set()
        while self._stoppers:
            name, stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception:  # keep stopping the rest: the outbox must still close
                log.exception("stopping %s failed", name)

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT (or ``stop_event``), stop; returns exit code 0."""
        self.install_signal_handlers()
        self.start()
        self.stop_event.wait()
        log.info("stopping: draining in-flight windows and flushing the outbox")
        self.stop()
        return 0

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT set the stop event; SIGHUP reloads sinks (main thread only)."""
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(
            target=self.reload, name="reload", daemon=True).start())

    def reload(self, config: ServiceConfig | None = None) -> None:
        """Rebuild the sinks (InfluxDB, alert voting and webhooks) from ``config`` (default:
        re-read the config file); the MQTT session, model and pipeline stay up."""
        if config is None:
            if self.config_path is None:
                log.warning("SIGHUP ignored: no config file to re-read")
                return
            try:
                config = load_config(self.config_path)
            except ValueError as exc:
                log.error("SIGHUP: config not reloaded, keeping the running one: %s", exc)
                return
        self.config = self.config.model_copy(update={"sinks": config.sinks,
                                                     "alerts": config.alerts})
        previous = self._forwarder
        self._stop_forwarder()
        self._launch_forwarder(previous)
        log.info("reloaded sinks from %s", self.config_path or "the given config")

    def _start_outbox(self) -> None:
        c = self.config.outbox
        try:
            self.outbox = Outbox(c.path, c.max_bytes, c.when_full, metrics=self.metrics)
        except (OSError, sqlite3.Error) as exc:
            raise StartError([f"outbox.path: cannot open {str(c.path)!r}: "
                              f"{getattr(exc, 'strerror', None) or exc}: point outbox.path at a "
                              "slewguard outbox, or a new file, in a writable directory"]) \
                from None
        self._stoppers.append(("outbox", self.outbox.close))

    def _start_model(self) -> None:
        if self.classifier is None:
            self.classifier = load_classifier(self.config)
            path = self.config.model.path
            # e.g. minilm-pruned-4x, or the shipped model's name
            self.model_label = Path(path).name if path else self.config.model.shipped
            log.info("model %s runs on the %s runtime, the signal stages on %s's FFT",
                     self.model_label, getattr(self.classifier, "runtime", "torch"),
                     fft.backend())
        else:
            self.model_label = model_name(self.classifier)
        from slewguard.service.trust import apply_torch_threads

        apply_torch_threads(self.config.model.torch_threads)  # None, or no torch: left alone
        self.metrics.model_loaded.set(1)
        self.metrics.set_build_info(__version__, self.model_label)

    def _start_http(self) -> None:
        c = self.config.http
        try:
            self.http = HealthServer(self.metrics, self._checks(), c.host, c.port)
        except OSError as exc:
            raise StartError([bind_problem(exc, c.host, c.port)]) from None
        self.http.start()
        self._stoppers.append(("http", self.http.stop))

    def _checks(self) -> dict[str, Callable[[], str | None]]:
        def broker() -> str | None:
            ok = self.ingest is not None and self.ingest.connected.is_set()
            return None if ok else f"not connected to {self.config.mqtt.host}:" \
                                   f"{self.config.mqtt.port}"

        def model() -> str | None:
            return None if self.classifier is not None else "no model loaded"

        def outbox() -> str | None:
            path = self.config.outbox.path
            target = path if path.exists() else path.parent
            return None if os.access(target, os.W_OK) else f"{target} is not writable"

        def pipeline() -> str | None:
            if self.pipeline is None:
                return "pipeline not started"
            stopped = self.pipeline.stopped_threads()  # e.g. ["pipeline-inference"]
            if not stopped:
                return None
            return f"{' and '.join(stopped)} thread{'s' if len(stopped) > 1 else ''} not running"

        return {"broker": broker, "model": model, "outbox": outbox, "pipeline": pipeline}

    def _start_forwarder(self) -> None:
        # The ingest connection is created (not started) here: the pipeline acks and
        # dead-letters on it, and the results connection's client id derives from its. Results
        # are published on that second client (publisher_client), never on the ingest one.
        self.ingest = Ingest(self.config.mqtt, self.metrics, self._submit,
                             {"version": __version__, "model": self.model_label})
        # Disconnect only after the pipeline acked its drained windows: the ack needs the
        # connection, so it is torn down after the pipeline (and the forwarder) stopped.
        self._stoppers.append(("mqtt", self.ingest.stop))
        self._results_client = publisher_client(self.config.mqtt,
                                                f"{self.ingest.client_id}-results")
        self._stoppers.append(("mqtt results", self._stop_results_client))
        self._launch_forwarder()
        self._stoppers.append(("forwarder", self._stop_forwarder))

    def _launch_forwarder(self, previous: Forwarder | None = None) -> None:
        """Build the sinks and start the forwarder; ``previous`` (the stopped forwarder of a
        reload) hands over its sinks' outages."""
        from slewguard.service.sinks.forwarder import Backoff, Forwarder

        assert self.ingest is not None and self.outbox is not None
        sinks = self._build_sinks(previous.sinks if previous is not None else ())
        paces = [s.pace() for s in self.config.sinks.values() if s is not None]
        pace = next((p for p in paces if p is not None), None)
        options: dict[str, Any] = {"idle_s": FORWARDER_IDLE_S}
        if pace is not None:  # the first sink that asks (a database) sets batch and backoff
            options = {"batch_size": pace.batch_size, "idle_s": pace.idle_s,
                       "backoff": Backoff(min_s=pace.retry_min_s, max_s=pace.retry_max_s)}
        self._forwarder = Forwarder(self.outbox, sinks, self.metrics, **options)
        if previous is not None:
            self._forwarder.take_over(previous)
        self._forwarder_stop = threading.Event()
        self._forwarder_thread = threading.Thread(
            target=self._forwarder.run, args=(self._forwarder_stop,), name="forwarder",
            daemon=True)
        self._forwarder_thread.start()

    def _build_sinks(self, replaces: Sequence[Sink] = ()) -> list[Sink]:
        """The built-in sinks (alerts, mqtt), then one per entry of ``sinks``, through the sink
        registry (``sinks.registry.build_sinks``); at start and on each reload, which passes
        the sinks it closed as ``replaces``."""
        from slewguard.service.sinks.registry import SinkContext, build_sinks

        return build_sinks(SinkContext(self.config, self.metrics, self._results_client,
                                       tuple(replaces)))

    def _stop_forwarder(self) -> None:
        self._forwarder_stop.set()
        if self._forwarder_thread is not None:
            self._forwarder_thread.join(30)
            self._flush()
        for sink in getattr(self._forwarder, "sinks", []):
            close = getattr(sink, "close", None)
            if close is not None:
                close()

    def _stop_results_client(self) -> None:
        self._results_client.disconnect()
        self._results_client.loop_stop()

    def _flush(self) -> None:
        """Forward what is left in the outbox while the sinks take it (bounded in time)."""
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while self.outbox is not None and self.outbox.depth() > 0:
            if time.monotonic() > deadline or self._forwarder.step() > 0:
                log.warning("%d results stay in the outbox for the next start",
                            self.outbox.depth())
                return

    def _start_pipeline(self) -> None:
        assert self.ingest is not None and self.outbox is not None
        limit = self.config.max_payload_bytes()
        letters = DeadLetters(self.config.mqtt.dead_letter_topic, self.ingest.publish,
                              self.metrics, user_properties=self.ingest.is_v5,
                              max_payload_bytes=limit)
        settings = PipelineSettings.from_config(self.config.inference, self.config.model)
        self.pipeline = Pipeline(settings, self.classifier, self.outbox,
                                 SensorMap(self.config).resolve, self.metrics,
                                 ack=self.ingest.ack, dead_letter=letters.send,
                                 model=self.model_label, max_payload_bytes=limit,
                                 evidence=evidence_stage(self.config))
        self.pipeline.start()
        self._stoppers.append(("pipeline", self.pipeline.stop))

    def _start_ingest(self) -> None:
        assert self.ingest is not None
        self.ingest.start()
        self._stoppers.append(("ingest", self.ingest.pause))

    def _start_status(self) -> None:
        interval = self.config.logging.status_interval_s
        if interval <= 0:
            return
        from slewguard.service.status import StatusLine, log_status

        status = StatusLine(self.metrics, self.outbox, self.config.inference.queue_size)
        stop = threading.Event()
        thread = threading.Thread(target=log_status, args=(status, interval, stop),
                                  name="status", daemon=True)
        thread.start()
        self._stoppers.append(("status", lambda: (stop.set(), thread.join(5))))

    def _submit(self, inbound: Inbound) -> None:
        if self.pipeline is not None:
            self.pipeline.submit(inbound)
