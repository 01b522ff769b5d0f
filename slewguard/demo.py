"""``slewguard demo``: the whole stream on one machine, after a look at the signals.

Part 1 (``--signal-only`` stops here): per fault class, one simulated window, its key features
(envelope levels at the defect lines, kurtosis, crest factor), the text the language model reads,
and the squared-envelope spectrum with the defect lines marked (``out/envelope_spectra.png``).

Part 2 (``demo_stream``): an embedded MQTT broker, a simulated fleet of slewing bearings, the
daemon with the shipped pruned model, the SQLite outbox and the Prometheus endpoint; a live table
of verdicts, then a summary (accuracy against the simulator's truth, throughput, latency) that is
also written to ``out/stream_summary.json``.

Example:
    $ slewguard demo --windows 8 --out out
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from slewguard.extras import MissingExtraError, available
from slewguard.signal import envelope_plot
from slewguard.signal.rule import LEVEL_DB, LINE_DB

TABLE_LINES = {"bpfo": "BPFO", "bpfi": "BPFI", "bsf2": "2xBSF", "ftf": "FTF"}
COMMISSIONING_WINDOWS = 3  # healthy windows of other seeds: the bearing's baseline level


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    demo = subparsers.add_parser(
        "demo",
        help="the whole stream on this machine: sensors -> MQTT -> daemon -> outbox, live",
        description="Simulate one window per fault class (features, texts, envelope spectra), "
        "then run an embedded MQTT broker, a simulated fleet of slewing bearings and the daemon "
        "with the shipped model; show live verdicts and a summary (accuracy, throughput, "
        "latency).",
    )
    demo.add_argument("--bearing", default="slew-4pc-1000", help="bearing preset name")
    demo.add_argument("--rpm", type=float, default=6.0, help="shaft speed in rpm")
    demo.add_argument("--snr-db", type=float, default=10.0, help="signal-to-noise ratio in dB")
    demo.add_argument("--window-seconds", type=float, default=20.0, help="window length in s")
    demo.add_argument("--sample-rate-hz", type=float, default=5000.0, help="sample rate in Hz")
    demo.add_argument("--seed", type=int, default=0, help="simulation seed")
    demo.add_argument("--out", type=Path, default=Path("out"), help="directory for the outputs")
    stream = demo.add_argument_group("stream")
    stream.add_argument("--signal-only", action="store_true", help="stop after the signal part")
    stream.add_argument("--windows", type=int, default=8, help="windows each bearing sends")
    stream.add_argument("--sensors", type=int, default=6, help="bearings in the simulated fleet "
                        "(the second half develops inner-race, outer-race, ball faults)")
    stream.add_argument("--rate-hz", type=float, default=1.0, help="windows per second each "
                        "bearing sends (0: as fast as possible)")
    stream.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto",
                        help="embedded broker: mosquitto when installed, else amqtt in-process")
    stream.add_argument("--model", type=Path, default=None, help="model directory or shipped "
                        "model name (default, fast; default: the shipped default model; "
                        "without one a tiny model is trained here)")
    stream.add_argument("--timeout-s", type=float, default=120.0, help="longest wait for the "
                        "daemon to store every window after the sensors finished")
    demo.set_defaults(func=run_demo)


@dataclass
class ClassView:
    """One simulated class as the demo shows it: the model's text, the daemon's evidence."""

    fault: str
    features: dict[str, float] | None  # None: the class cannot be simulated at these settings
    text: str
    panel: envelope_plot.Panel | None  # spectrum, evidence and envelope-rule verdict
    note: str = ""


def _spec(fault: str, args: argparse.Namespace):
    from slewguard.signal.scenario import SimulationSpec

    return SimulationSpec(fault=fault, bearing=args.bearing, rpm=args.rpm,
                          sample_rate_hz=args.sample_rate_hz, snr_db=args.snr_db,
                          window_seconds=args.window_seconds)


def commissioning_baseline(args: argparse.Namespace):
    """The bearing's healthy level, from a few healthy windows of other seeds (as the daemon
    learns it from a bearing's first windows)."""
    from slewguard.signal.evidence import Baseline
    from slewguard.signal.simulate import simulate

    spec = _spec("healthy", args)
    windows = [simulate(spec, n_windows=1, seed=args.seed + 1 + k).windows[0]
               for k in range(COMMISSIONING_WINDOWS)]
    return Baseline.from_windows(windows)


def model_template(args: argparse.Namespace) -> str:
    """The text template of the model the demo runs (``--model``, else the shipped default;
    the tiny fallback model reads t1)."""
    from slewguard.models import card as model_card
    from slewguard.models.shipped import shipped_model_dir
    from slewguard.signal.textify import TEMPLATE_VERSION

    for folder in (args.model, shipped_model_dir()):
        if folder is not None and (Path(folder) / "card.json").is_file():
            return model_card.read(Path(folder)).template_version
    return TEMPLATE_VERSION


def analyse_class(fault: str, args: argparse.Namespace, baseline=None,
                  version: str = "t1") -> ClassView:
    """Simulate one window of ``fault``: its features, the daemon's evidence and the text a
    model of template ``version`` reads."""
    from slewguard.signal.features import extract
    from slewguard.signal.kinematics import preset
    from slewguard.signal.simulate import simulate
    from slewguard.signal.templates import template

    try:
        spec = _spec(fault, args)
    except ValueError as exc:  # e.g. the cage line of a slewing ring needs minutes
        errors = exc.errors() if hasattr(exc, "errors") else [{"msg": str(exc)}]
        note = errors[0]["msg"].removeprefix("Value error, ")
        return ClassView(fault, None, "", None, note=note)
    sim = simulate(spec, n_windows=1, seed=args.seed)
    row = extract(sim.windows, spec.sample_rate_hz, preset(spec.bearing), rpm=sim.rpm).row(0)
    panel = envelope_plot.measure(sim.windows[0], spec.sample_rate_hz, spec.bearing, args.rpm,
                                  fault, snr_db=args.snr_db, baseline=baseline)
    chosen = template(version)
    text = chosen.textify(panel.evidence if chosen.reads == "evidence" else row)
    return ClassView(fault, row, text, panel)


def class_table(views: list[ClassView], title: str = "") -> Table:
    """Rich table, one row per class: the daemon's evidence (1x line heights in dB over their
    floor, level over the healthy baseline), which lines cross the threshold, the envelope
    rule's verdict.

    Example:
        >>> class_table([]).row_count
        0
    """
    table = Table(title=title, caption=(
        f"1x line heights in dB over the local floor, as the daemon measures them; from "
        f"{LINE_DB:g} dB a line is a finding (red), below it is noise. The envelope rule calls a "
        f"race fault from a BPFO or BPFI line, rolling elements from a level {LEVEL_DB:g} dB "
        "over the bearing's healthy baseline."))
    table.add_column("class", no_wrap=True)
    for label in TABLE_LINES.values():
        table.add_column(label, justify="right", min_width=4)
    table.add_column("level", justify="right", min_width=4)
    table.add_column("findings")
    table.add_column("envelope rule")
    for view in views:
        if view.panel is None:
            table.add_row(view.fault, *["-"] * 5, "not simulated", "-")
            continue
        e = view.panel.evidence
        over = [label for line, label in TABLE_LINES.items() if e[f"{line}_h1_db"] >= LINE_DB]
        cells = [f"[bold red]{e[f'{line}_h1_db']:.1f}[/]" if label in over
                 else f"{e[f'{line}_h1_db']:.1f}" for line, label in TABLE_LINES.items()]
        verdict = view.panel.verdict.replace("_", " ")
        table.add_row(view.fault, *cells, f"{e['rms_rel_db']:+.1f}",
                      f"[bold red]{', '.join(over)}[/]" if over else "none",
                      verdict if verdict == "healthy" else f"[bold red]{verdict}[/]")
    return table


def plot_envelope_spectra(views: list[ClassView], bearing: str, path: Path) -> Path:
    """One panel per simulated class (``envelope_plot``); the skipped ones named on top."""
    shown = [v.panel for v in views if v.panel is not None]
    skipped = "; ".join(f"{v.fault} not simulated: {v.note}" for v in views if v.panel is None)
    envelope_plot.plot(shown, path, f"Envelope spectra, bearing {bearing}, one simulated window "
                                    f"per class\n{skipped}".strip())
    return path


def run_demo(args: argparse.Namespace) -> int:
    """The signal part, then (unless ``--signal-only``) the stream; returns the exit code."""
    from slewguard.models.shipped import SHIPPED_MODELS, shipped_model_dir
    from slewguard.signal.kinematics import preset

    if not available("matplotlib"):  # the envelope spectra PNG; the demo extra brings it
        raise MissingExtraError("demo", "demo")
    preset(args.bearing)  # an unknown name fails here, listing the known ones
    for name in ("windows", "sensors"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}={getattr(args, name)} must be >= 1")
    if args.model is not None and not args.model.exists() and str(args.model) in SHIPPED_MODELS:
        args.model = shipped_model_dir(str(args.model))  # a shipped model by name, e.g. fast
    if args.model is not None and not (args.model / "card.json").is_file():
        raise ValueError(f"--model={str(args.model)!r} holds no card.json: pass a directory "
                         f"written by `slewguard train`, a shipped model "
                         f"({', '.join(SHIPPED_MODELS)}), or leave --model out")
    if args.rate_hz < 0:
        raise ValueError(f"--rate-hz={args.rate_hz} must be >= 0 (0: as fast as possible)")
    console = Console()
    show_signals(args, console)
    return 0 if args.signal_only else run_stream(args, console)


def show_signals(args: argparse.Namespace, console: Console) -> None:
    """Simulate each class, print the feature table and texts, save the envelope-spectra PNG."""
    from rich.progress import track

    from slewguard.signal.scenario import FAULT_CLASSES

    console.rule("1. what the model reads: one simulated window per fault class")
    baseline = commissioning_baseline(args)
    version = model_template(args)
    views = [
        analyse_class(f, args, baseline, version)
        for f in track(FAULT_CLASSES, description="simulating", console=console, transient=True)
    ]
    title = (
        f"{args.bearing}, {args.rpm:g} rpm, {args.sample_rate_hz:g} Hz, "
        f"{args.window_seconds:g} s windows, SNR {args.snr_db:g} dB"
    )
    console.print(class_table(views, title))
    console.print(f"texts the model reads (template {version}):")
    for view in views:
        line = f"text {view.fault}: {view.text}" if view.features else f"skip {view.fault}: "
        console.print(line + view.note, soft_wrap=True, highlight=False)
    path = plot_envelope_spectra(views, args.bearing, args.out / "envelope_spectra.png")
    console.print(f"envelope spectra: {path}")


def run_stream(args: argparse.Namespace, console: Console) -> int:
    """Broker, daemon, sensors, live table, summary; everything stops even on Ctrl-C."""
    from slewguard import demo_stream as ds

    if not args.verbose:  # their INFO lines and progress bars would tear the live table
        if available("transformers"):  # the shipped model runs on onnx, without it
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        for name in ds.QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    console.rule("2. the stream: sensors -> MQTT -> daemon -> outbox")
    stoppers: list = []
    summary: dict | None = None
    with tempfile.TemporaryDirectory(prefix="slewguard-demo-") as tmp:
        try:
            summary = _stream(args, console, Path(tmp), stoppers)
        except KeyboardInterrupt:
            console.print("\n[yellow]interrupted[/]: stopping the sensors, the daemon (it "
                          "stores what it holds) and the broker")
        finally:
            while stoppers:
                _stop_quietly(stoppers.pop())
    if summary is None:
        console.print("stopped cleanly")
        return 130
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stream_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(ds.summary_table(summary, args.rate_hz))
    console.print(f"summary: {args.out / 'stream_summary.json'}")
    complete = summary["stored"] == summary["published"] == args.windows * args.sensors
    return 0 if complete and not summary["publisher_error"] else 1


def _stop_quietly(stop) -> None:
    try:
        stop()
    except Exception:  # keep stopping the rest: the broker must not outlive the demo
        logging.getLogger(__name__).exception("stopping a demo part failed")


def _stream(args: argparse.Namespace, console: Console, tmp: Path, stoppers: list) -> dict:
    from slewguard import demo_stream as ds
    from slewguard.service.app import App
    from slewguard.service.publisher import Fleet, connect

    broker = ds.start_broker(args.broker, tmp)
    stoppers.append(broker.stop)
    console.print(f"broker   {broker.kind} on 127.0.0.1:{broker.port} (MQTT {broker.protocol})")
    classifier, origin = ds.demo_model(args, console)
    console.print(f"model    {origin}")
    fleet = Fleet(ds.fleet_spec(args))
    app = App(ds.daemon_config(broker, fleet, tmp), classifier=classifier)
    app.start()
    stoppers.append(app.stop)
    metrics_url = f"http://127.0.0.1:{app.http_port}/metrics"
    console.print(f"metrics  {metrics_url}  (probes: /healthz /readyz)\n"
                  f"outbox   {app.config.outbox.path} (deleted at the end)")
    if not app.ingest.subscribed.wait(30):
        raise RuntimeError(f"the daemon did not subscribe on {broker.kind} within 30 s")
    client = connect("127.0.0.1", broker.port, client_id="demo-sensors",
                     username="demo-sensors" if broker.username else None,
                     protocol=broker.protocol)
    stoppers.append(lambda: (client.disconnect(), client.loop_stop()))
    ledger, stop = ds.Ledger(), threading.Event()
    sender = threading.Thread(target=ds.publish_fleet, name="sensors", daemon=True,
                              args=(fleet, client, args.windows, args.rate_hz, ledger, stop))
    sender.start()
    stoppers.append(lambda: (stop.set(), sender.join(30)))
    _watch(args, console, fleet, ledger, sender, app.config.outbox.path)
    summary = ds.summarise(fleet, ledger, app.metrics)
    summary["prometheus_windows_processed"] = ds.scrape_processed(metrics_url)
    return summary


def _watch(args: argparse.Namespace, console: Console, fleet, ledger, sender: threading.Thread,
           outbox_path: Path) -> None:
    """Refresh the live table until every published window is stored (or the timeout)."""
    from rich.live import Live

    from slewguard import demo_stream as ds

    last_id, deadline = 0, None
    table = ds.live_table(fleet, ledger, args.windows)
    with Live(table, console=console, refresh_per_second=4) as live:
        while True:
            last_id = ds.read_outbox(outbox_path, ledger, last_id)
            live.update(ds.live_table(fleet, ledger, args.windows))
            if not sender.is_alive():
                deadline = deadline or time.monotonic() + args.timeout_s
                if len(ledger.stored) >= ledger.n_published() or time.monotonic() > deadline:
                    break
            time.sleep(0.25)
    console.print()
