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

import numpy as np
from rich.console import Console
from rich.table import Table

LINE_LABELS = {"bpfo": "outer", "bpfi": "inner", "bsf2": "ball", "ftf": "cage"}
LINE_COLOURS = {"bpfo": "tab:red", "bpfi": "tab:blue", "bsf2": "tab:green", "ftf": "tab:purple"}


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
    """One simulated class as the demo shows it: features, text and envelope spectrum."""

    fault: str
    features: dict[str, float] | None  # None: the class cannot be simulated at these settings
    text: str
    band_hz: tuple[float, float]  # demodulation band
    orders: np.ndarray  # envelope-spectrum axis in orders of shaft speed
    level_db: np.ndarray  # envelope amplitude in dB over its median
    note: str = ""


def analyse_class(fault: str, args: argparse.Namespace) -> ClassView:
    """Simulate one window of ``fault`` and extract what the model and the plot need."""
    from slewguard.signal.features import envelope_spectrum, extract
    from slewguard.signal.kinematics import preset
    from slewguard.signal.simulate import SimulationSpec, simulate
    from slewguard.signal.textify import textify

    try:
        spec = SimulationSpec(
            fault=fault,
            bearing=args.bearing,
            rpm=args.rpm,
            sample_rate_hz=args.sample_rate_hz,
            snr_db=args.snr_db,
            window_seconds=args.window_seconds,
        )
    except ValueError as exc:  # e.g. the cage line of a slewing ring needs minutes
        errors = exc.errors() if hasattr(exc, "errors") else [{"msg": str(exc)}]
        note = errors[0]["msg"].removeprefix("Value error, ")
        return ClassView(fault, None, "", (0.0, 0.0), np.zeros(0), np.zeros(0), note=note)
    sim = simulate(spec, n_windows=1, seed=args.seed)
    row = extract(sim.windows, spec.sample_rate_hz, preset(spec.bearing), rpm=sim.rpm).row(0)
    nyquist = spec.sample_rate_hz / 2
    centre, width = row["band_centre_rel"] * nyquist, row["band_width_rel"] * nyquist
    shaft_hz = args.rpm / 60.0
    top_order = 1.15 * 3 * preset(spec.bearing).orders().bpfi_hz
    freqs, amp = envelope_spectrum(
        sim.windows,
        spec.sample_rate_hz,
        band_hz=(centre - width / 2, centre + width / 2),
        max_freq_hz=top_order * shaft_hz,
    )
    level_db = 20 * np.log10(amp[0] / np.median(amp[0, 1:]) + 1e-12)
    band_hz = (centre - width / 2, centre + width / 2)
    return ClassView(fault, row, textify(row), band_hz, freqs / shaft_hz, level_db)


def class_table(views: list[ClassView], title: str = "") -> Table:
    """Rich table, one row per class: h1 defect-line levels (dB over floor), kurtosis, crest, band.

    Example:
        >>> class_table([]).row_count
        0
    """
    table = Table(title=title, caption="line levels: 1x line, dB over the local noise floor")
    table.add_column("class", no_wrap=True)
    for line in LINE_LABELS:
        table.add_column(line, justify="right")
    for name in ("kurt", "crest", "band Hz"):
        table.add_column(name, justify="right", no_wrap=True)
    for view in views:
        if view.features is None:
            table.add_row(view.fault, *["-"] * 7)
            continue
        f = view.features
        levels = {line: f[f"env_{line}_h1_db"] for line in LINE_LABELS}
        strongest = max(levels, key=levels.get)
        cells = [
            f"[bold]{v:.1f}[/bold]" if k == strongest and v >= 10 else f"{v:.1f}"
            for k, v in levels.items()
        ]
        band = f"{view.band_hz[0]:.0f}-{view.band_hz[1]:.0f}"
        table.add_row(view.fault, *cells, f"{f['kurtosis']:.1f}", f"{f['crest_factor']:.1f}", band)
    return table


def plot_envelope_spectra(views: list[ClassView], bearing: str, path: Path) -> Path:
    """One panel per class: envelope spectrum in orders with the defect lines 1x..3x marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slewguard.signal.kinematics import preset

    orders = preset(bearing).orders().as_dict()
    shown = [v for v in views if v.features is not None]
    fig, axes = plt.subplots(
        len(shown), 1, figsize=(11, 2.1 * len(shown)), sharex=True, squeeze=False
    )
    for ax, view in zip(axes[:, 0], shown, strict=True):
        ax.plot(view.orders, view.level_db, color="0.25", lw=0.7)
        for line, colour in LINE_COLOURS.items():
            for k in (1, 2, 3):
                ax.axvline(
                    k * orders[f"{line}_hz"],
                    color=colour,
                    lw=1.0,
                    alpha=0.6,
                    ls="--",
                    label=f"{line} ({LINE_LABELS[line]})" if k == 1 else None,
                )
        ax.set_ylabel("dB / median")
        ax.set_ylim(-10.0, max(15.0, float(view.level_db.max()) + 5.0))
        ax.set_title(f"{view.fault}:  {view.text}", fontsize=8, loc="left", family="monospace")
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("envelope frequency / shaft frequency (orders)")
    axes[-1, 0].set_xlim(0, shown[0].orders[-1] if shown else 1)
    skipped = "; ".join(f"{v.fault} not simulated: {v.note}" for v in views if v.features is None)
    fig.suptitle(f"Squared-envelope spectra, {bearing}\n{skipped}".strip(), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(args: argparse.Namespace) -> int:
    """The signal part, then (unless ``--signal-only``) the stream; returns the exit code."""
    from slewguard.models.shipped import SHIPPED_MODELS, shipped_model_dir
    from slewguard.signal.kinematics import preset

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

    from slewguard.signal.simulate import FAULT_CLASSES
    from slewguard.signal.textify import TEMPLATE_VERSION

    console.rule("1. what the model reads: one simulated window per fault class")
    views = [
        analyse_class(f, args)
        for f in track(FAULT_CLASSES, description="simulating", console=console, transient=True)
    ]
    title = (
        f"{args.bearing}, {args.rpm:g} rpm, {args.sample_rate_hz:g} Hz, "
        f"{args.window_seconds:g} s windows, SNR {args.snr_db:g} dB"
    )
    console.print(class_table(views, title))
    console.print(f"texts the model reads (template {TEMPLATE_VERSION}):")
    for view in views:
        line = f"text {view.fault}: {view.text}" if view.features else f"skip {view.fault}: "
        console.print(line + view.note, soft_wrap=True, highlight=False)
    path = plot_envelope_spectra(views, args.bearing, args.out / "envelope_spectra.png")
    console.print(f"envelope spectra: {path}")


def run_stream(args: argparse.Namespace, console: Console) -> int:
    """Broker, daemon, sensors, live table, summary; everything stops even on Ctrl-C."""
    from slewguard import demo_stream as ds

    if not args.verbose:  # their INFO lines and progress bars would tear the live table
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
