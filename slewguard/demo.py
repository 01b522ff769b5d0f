"""``slewguard demo``: simulate each fault class on a slewing bearing, show what the model reads.

Per class: one simulated window, its key features (envelope levels at the defect lines, kurtosis,
crest factor), the text the language model will read, and the squared-envelope spectrum with the
defect lines marked (``out/envelope_spectra.png``).

Example:
    $ slewguard demo --rpm 6 --snr-db 10 --out out
"""

from __future__ import annotations

import argparse
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
        help="simulate each fault class on a slewing bearing: features, texts, envelope spectra",
        description="Simulate one window per fault class, extract features, print the texts the "
        "model reads and plot the envelope spectra with the defect lines marked.",
    )
    demo.add_argument("--bearing", default="slew-4pc-1000", help="bearing preset name")
    demo.add_argument("--rpm", type=float, default=6.0, help="shaft speed in rpm")
    demo.add_argument("--snr-db", type=float, default=10.0, help="signal-to-noise ratio in dB")
    demo.add_argument("--window-seconds", type=float, default=30.0, help="window length in s")
    demo.add_argument("--sample-rate-hz", type=float, default=5000.0, help="sample rate in Hz")
    demo.add_argument("--seed", type=int, default=0, help="simulation seed")
    demo.add_argument("--out", type=Path, default=Path("out"), help="directory for the plots")
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
    """Simulate, extract, print the table and texts, save the PNG; exit code 0."""
    from rich.progress import track

    from slewguard.signal.kinematics import preset
    from slewguard.signal.simulate import FAULT_CLASSES
    from slewguard.signal.textify import TEMPLATE_VERSION

    preset(args.bearing)  # an unknown name fails here, listing the known ones
    console = Console()
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
    return 0
