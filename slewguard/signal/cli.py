"""``slewguard dataset ...`` and ``slewguard bearings``: make, inspect and list signal-side inputs.

Example:
    $ slewguard dataset simulate --out data/sim --windows-per-class 20 --rpm-max 6 --seed 1
    $ slewguard dataset cwru --protocol paper-4class --out data/cwru-4
    $ slewguard dataset uestc --protocol speed-1400 --out data/uestc-1400
    $ slewguard dataset info data/sim
    $ slewguard dataset plot data/sim --out sim.png
    $ slewguard bearings --rpm 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Simulation options that take several values, with the singular spelling users reach for.
LIST_ALIASES = {"classes": "--class", "bearings": "--bearing", "speed_profiles": "--speed-profile"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``dataset`` (simulate, cwru, uestc, info) and ``bearings`` to the top-level parser.

    Example:
        >>> parser = argparse.ArgumentParser(); register(parser.add_subparsers())
    """
    dataset = subparsers.add_parser(
        "dataset", help="make or inspect a labelled train/test window data set",
        description="Make a data set (simulated or CWRU) on disk, or describe one.")
    sub = dataset.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", required=True)
    _add_simulate(sub)
    from slewguard.signal.cwru import PROTOCOLS
    from slewguard.signal.uestc import PROTOCOLS as UESTC_PROTOCOLS

    cwru = _add_recordings(sub, "cwru", "window the CWRU 12 kHz recordings under one protocol",
                           PROTOCOLS, PROTOCOLS[0], 1.0,
                           "faults-3class: IR/B/OR, 0-2 HP -> 3 HP; paper-4class: plus Normal, "
                           "time-split (default: %(default)s)")
    cwru.set_defaults(func=_cwru)
    uestc = _add_recordings(sub, "uestc", "window the UESTC 20 kHz recordings (a second real rig)",
                            UESTC_PROTOCOLS, UESTC_PROTOCOLS[-1], 2.0,
                            "test on this nominal speed, train on the others "
                            "(default: %(default)s)")
    uestc.set_defaults(func=_uestc)
    info = sub.add_parser("info", help="print class counts per side, sample rate, provenance")
    info.add_argument("path", type=Path, help="a directory written by `dataset simulate|cwru`")
    info.set_defaults(func=_info)
    plot = sub.add_parser("plot", help="PNG: one window per class and its envelope spectrum")
    plot.add_argument("path", type=Path, help="a directory written by `dataset simulate|cwru`")
    plot.add_argument("--out", type=Path, required=True, help="PNG file to write")
    plot.add_argument("--side", choices=("train", "test"), default="test",
                      help="(default: %(default)s)")
    plot.set_defaults(func=_plot)
    bearings = subparsers.add_parser(
        "bearings", help="list bearing presets with their defect orders",
        description="Bearing presets (slewguard/signal/bearings.csv) and their defect lines in "
                    "orders (multiples of shaft speed), or in Hz with --rpm.")
    bearings.add_argument("--rpm", type=float, default=None, help="give the lines in Hz at rpm")
    bearings.set_defaults(func=_bearings)


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    """One option per SimulatedDatasetSpec field, so the two never drift apart."""
    from slewguard.signal.datasets import SimulatedDatasetSpec

    sim = sub.add_parser("simulate", help="simulate a reproducible slewing-bearing data set")
    sim.add_argument("--out", type=Path, required=True, help="directory to write")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, info in SimulatedDatasetSpec.model_fields.items():
        flags = ["--" + name.replace("_", "-")]
        kwargs: dict = {"dest": name, "default": None,
                        "help": f"{info.description} (default: {_show(info.default)})"}
        if name in LIST_ALIASES:
            flags.insert(0, LIST_ALIASES[name])
            kwargs |= {"nargs": "+", "action": "extend", "metavar": LIST_ALIASES[name][2:].upper()}
        else:
            kwargs["type"] = info.annotation if info.annotation in (int, float) else str
        sim.add_argument(*flags, **kwargs)
    sim.set_defaults(func=_simulate)


def _pydantic_message(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _show(value: object) -> str:
    return " ".join(value) if isinstance(value, tuple) else str(value)


def _simulate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from slewguard.signal.datasets import SimulatedDatasetSpec, simulate_dataset, write

    fields = SimulatedDatasetSpec.model_fields
    try:
        spec = SimulatedDatasetSpec(**{k: getattr(args, k) for k in fields
                                       if getattr(args, k) is not None})
    except ValidationError as exc:  # one line per problem, without pydantic's links
        raise ValueError("; ".join(_pydantic_message(e) for e in exc.errors())) from None
    write(simulate_dataset(spec, progress=not args.quiet), args.out)
    return _info(argparse.Namespace(path=args.out))


def _add_recordings(sub: argparse._SubParsersAction, name: str, help_text: str,
                    protocols: tuple[str, ...], default: str, window_s: float,
                    protocol_help: str) -> argparse.ArgumentParser:
    """``dataset <name>``: the options every real-recordings loader takes."""
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument("--protocol", choices=protocols, default=default, help=protocol_help)
    parser.add_argument("--out", type=Path, required=True, help="directory to write")
    parser.add_argument("--root", type=Path, default=None,
                        help=f"{name.upper()} directory (default: $SLEWGUARD_{name.upper()}_DIR "
                             f"or ../shared/data/{name})")
    parser.add_argument("--window-seconds", type=float, default=window_s,
                        help="(default: %(default)s)")
    parser.add_argument("--hop-seconds", type=float, default=None,
                        help="hop between windows; less than the window overlaps (default: none)")
    parser.add_argument("--verify-sha256", action="store_true", help="check every file's sha256")
    return parser


def _cwru(args: argparse.Namespace) -> int:
    from slewguard.signal.cwru import load_cwru
    from slewguard.signal.datasets import write

    split = load_cwru(args.root, args.protocol, args.window_seconds, args.hop_seconds,
                      verify_sha256=args.verify_sha256, progress=True)
    write(split, args.out)
    return _info(argparse.Namespace(path=args.out))


def _uestc(args: argparse.Namespace) -> int:
    from slewguard.signal.datasets import write
    from slewguard.signal.uestc import load_uestc

    split = load_uestc(args.root, args.protocol, args.window_seconds, args.hop_seconds,
                       verify_sha256=args.verify_sha256, progress=True)
    write(split, args.out)
    return _info(argparse.Namespace(path=args.out))


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from slewguard.signal.datasets import read_manifest, sort_classes

    manifest = read_manifest(args.path)
    sides = manifest["sides"]
    console = Console(width=120)
    console.print(f"[bold]{manifest['name']}[/] in {args.path} ({manifest['written_by']})")
    console.print(manifest["note"], markup=False)
    table = Table("class", *sides)
    for name in sort_classes({c for side in sides.values() for c in side["counts"]}):
        table.add_row(name, *(str(side["counts"].get(name, 0)) for side in sides.values()))
    table.add_row("[bold]total[/]", *(str(side["n_windows"]) for side in sides.values()))
    console.print(table)
    for side_name, side in sides.items():
        seconds = side["window_samples"] / side["sample_rate_hz"]
        console.print(f"{side_name}: {side['sample_rate_hz']:g} Hz, {side['window_samples']} "
                      f"samples ({seconds:g} s) per window, bearing {side['bearing']}")
    provenance = {k: v for k, v in manifest["provenance"].items() if k != "files"}
    if "files" in manifest["provenance"]:
        provenance["files"] = f"{len(manifest['provenance']['files'])} (sha256 in manifest.json)"
    console.print("provenance:", json.dumps(provenance), markup=False)
    return 0


def _bearings(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from slewguard.signal.kinematics import presets

    unit = "orders" if args.rpm is None else f"Hz at {args.rpm:g} rpm"
    table = Table("preset", "kind", "Pd mm", "Bd mm", "N", "alpha deg", "FTF", "BPFO", "BPFI",
                  "BSF", "2xBSF", title=f"defect lines in {unit}")
    for name, g in presets().items():
        lines = g.orders() if args.rpm is None else g.frequencies(args.rpm)
        table.add_row(name, g.kind, f"{g.pitch_diameter_mm:g}", f"{g.element_diameter_mm:g}",
                      str(g.n_elements), f"{g.contact_angle_deg:g}",
                      *(f"{v:.4g}" for v in (lines.ftf_hz, lines.bpfo_hz, lines.bpfi_hz,
                                             lines.bsf_hz, lines.bsf2_hz)))
    Console(width=140).print(table)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from slewguard.extras import require

    require("plots", "dataset plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from slewguard.signal.datasets import read, sort_classes
    from slewguard.signal.features import envelope_spectrum
    from slewguard.signal.kinematics import preset

    ws = getattr(read(args.path, verify=False), args.side)
    classes = sort_classes(set(ws.labels.tolist()))
    fig, axes = plt.subplots(len(classes), 2, figsize=(12, 2.4 * len(classes)), squeeze=False)
    for (wave, env), name in zip(axes, classes, strict=True):
        i = int(np.flatnonzero(ws.labels == name)[0])
        lines = preset(str(ws.bearings()[i])).frequencies(ws.rpm[i])
        wave.plot(np.arange(ws.windows.shape[1]) / ws.sample_rate_hz, ws.windows[i], lw=0.3)
        wave.set(title=f"{name}: {ws.recording[i]}, {ws.rpm[i]:.4g} rpm", xlabel="s")
        band_hz = (0.1 * ws.sample_rate_hz, 0.4 * ws.sample_rate_hz)  # wide: lines fit inside
        freqs, amplitude = envelope_spectrum(ws.windows[i], ws.sample_rate_hz, band_hz,
                                             max_freq_hz=3.5 * lines.bpfi_hz)
        keep = freqs > 0.5 * min(lines.bpfo_hz, lines.bsf2_hz)  # drop the DC hump
        env.plot(freqs[keep], amplitude[0][keep], lw=0.6, color="k")
        for k, (line, color) in enumerate((("bpfo_hz", "C1"), ("bpfi_hz", "C2"),
                                           ("bsf2_hz", "C3"), ("ftf_hz", "C4"))):
            value = lines.as_dict()[line]
            env.axvline(value, color=color, ls="--", lw=0.8, label=f"{line[:-3]} {value:.3g} Hz")
            if k < 3:
                env.axvline(2 * value, color=color, ls=":", lw=0.6)
        varying = ws.rpm_trace is not None and np.ptp(ws.rpm_trace[i]) > 0.01 * ws.rpm[i]
        env.set(title="envelope spectrum, band 10-40% fs (dashed: 1x, dotted: 2x)"
                + (", speed varies" if varying else ""), xlabel="Hz")
        env.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{args.path} ({args.side})")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0
