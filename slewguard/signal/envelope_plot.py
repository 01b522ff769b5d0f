"""Envelope spectra for a maintenance engineer: lines named, heights in dB over their floor.

Each panel shows one window's whitened squared-envelope spectrum as the daemon's evidence stage
measures it (``evidence.envelope_spectrum``): every point in dB over its local floor (the
median of +-20 % around it, ``evidence.FLOOR_SPAN``), so a defect line's peak reads as the
``evidence.extract`` prominence that the envelope rule compares with its threshold
(``rule.LINE_DB``). Below the threshold is shaded: noise there is not a finding. The x axis is
in orders of shaft speed with Hz on the top axis; all panels share one y scale.

Example:
    >>> from slewguard.signal.simulate import SimulationSpec, simulate
    >>> spec = SimulationSpec(fault="outer_race", bearing="slew-4pc-1000", rpm=6.0,
    ...                       sample_rate_hz=5000.0, snr_db=10.0, window_seconds=20.0)
    >>> x = simulate(spec, n_windows=1, seed=0).windows[0]
    >>> panel = measure(x, 5000.0, "slew-4pc-1000", 6.0, "outer_race", snr_db=10.0)
    >>> panel.evidence["bpfo_h1_db"] > 12, panel.verdict
    (True, 'outer_race')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slewguard.signal import evidence
from slewguard.signal.kinematics import preset
from slewguard.signal.rule import LINE_DB, envelope_rule

CLASS_WORDS = {"healthy": "Healthy", "inner_race": "Inner-race fault",
               "outer_race": "Outer-race fault", "rolling_element": "Rolling-element fault",
               "cage": "Cage fault", "combined": "Combined faults"}
# evidence line -> (label, colour); bsf (single ball-spin) is left out: impacts show at 2 x BSF
LINE_STYLES = {"bpfo": ("BPFO", "tab:red"), "bpfi": ("BPFI", "tab:blue"),
               "bsf2": ("2xBSF", "tab:green"), "ftf": ("FTF", "tab:purple"),
               "shaft": ("shaft", "tab:brown")}
Y_LIMITS_DB = (-10.0, 40.0)  # one scale for every panel; raised when a line stands higher


@dataclass
class Panel:
    """One window as the figure shows it: spectrum in orders, the evidence, the rule's verdict."""

    fault: str  # the class the window is labelled with
    bearing: str
    rpm: float
    snr_db: float | None
    orders: np.ndarray  # (F,) envelope frequency / shaft frequency
    level_db: np.ndarray  # (F,) dB over the local floor
    evidence: dict[str, float]  # evidence.extract row (+ evidence.relative when a baseline)
    verdict: str
    reason: str


def measure(x: np.ndarray, sample_rate_hz: float, bearing: str, rpm: float, fault: str,
            snr_db: float | None = None, baseline: evidence.Baseline | None = None) -> Panel:
    """The evidence and the floor-relative envelope spectrum of one window (rpm measured)."""
    geometry = preset(bearing)
    row = evidence.extract(x, sample_rate_hz, geometry, rpm)
    row.update(evidence.relative(x, baseline))
    verdict, reason = envelope_rule(row)
    fr = rpm / 60.0
    top_order = evidence.top_order(geometry, 0.0)
    # past the top, the floor needs +-20 % of spectrum on both sides
    spectrum = evidence.envelope_spectrum(x, sample_rate_hz, 1.3 * top_order * fr)
    hz = np.arange(spectrum.amp.size) * spectrum.df_hz
    shown = (hz > 0) & (hz <= top_order * fr)
    floor = evidence._floor(spectrum, hz[shown], evidence.TOLERANCE_MEASURED)
    level = 20 * np.log10(np.maximum(spectrum.amp[shown], 1e-300) / np.maximum(floor, 1e-300))
    return Panel(fault, bearing, float(rpm), snr_db, hz[shown] / fr, level, row, verdict, reason)


def title(panel: Panel) -> str:
    """The panel's title in words.

    Example:
        >>> title(Panel("outer_race", "slew-4pc-1000", 6.0, 0.0, np.zeros(0), np.zeros(0), {},
        ...             "outer_race", ""))
        'Outer-race fault — bearing slew-4pc-1000, 6.0 rpm, SNR 0 dB'
    """
    snr = "" if panel.snr_db is None else f", SNR {panel.snr_db:g} dB"
    words = CLASS_WORDS.get(panel.fault, panel.fault.replace("_", " "))
    return f"{words} — bearing {panel.bearing}, {panel.rpm:.1f} rpm{snr}"


def findings(panel: Panel) -> list[str]:
    """The marked lines whose 1x height reaches the threshold, in dB, e.g. ``["BPFO 31"]``."""
    return [f"{label} {panel.evidence[f'{line}_h1_db']:.0f}"
            for line, (label, _) in LINE_STYLES.items()
            if panel.evidence.get(f"{line}_h1_db", 0.0) >= LINE_DB]


def reading(panel: Panel) -> tuple[str, str]:
    """The panel's reading in words and its colour: the envelope rule's verdict, or for a
    healthy verdict every line below the threshold (or which ones are not, and that the rule
    judges BPFO, BPFI and the level only).

    Example:
        >>> row = {"bpfo_h1_db": 3.0, "bpfi_h1_db": 7.4, "bsf2_h1_db": 7.0}
        >>> reading(Panel("healthy", "b", 6.0, None, np.zeros(0), np.zeros(0), row, "healthy",
        ...               ""))
        ('healthy: every line below the 12 dB threshold (strongest 7 dB)', 'tab:green')
    """
    if panel.verdict != "healthy":
        return f"envelope rule: {panel.verdict.replace('_', ' ')} ({panel.reason})", "tab:red"
    over = findings(panel)
    if over:
        return (f"over {LINE_DB:g} dB: {', '.join(over)} dB; envelope rule (BPFO/BPFI only): "
                "healthy", "tab:orange")
    strongest = max((panel.evidence.get(f"{line}_h1_db", 0.0) for line in LINE_STYLES),
                    default=0.0)
    return (f"healthy: every line below the {LINE_DB:g} dB threshold (strongest "
            f"{strongest:.0f} dB)", "tab:green")


def _draw(ax, panel: Panel, y_top: float) -> None:
    orders = preset(panel.bearing).orders().as_dict()
    ax.axhspan(Y_LIMITS_DB[0], LINE_DB, color="0.92", zorder=0)
    ax.axhline(LINE_DB, color="0.35", lw=1.0, ls="--", zorder=1)
    box = dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1)
    ax.text(0.995, LINE_DB + 0.8, f"alarm threshold {LINE_DB:g} dB",
            transform=ax.get_yaxis_transform(), ha="right", va="bottom", fontsize=7,
            color="0.3", bbox=box, zorder=5)
    ax.text(0.995, LINE_DB - 1.0, "below: noise, not a finding",
            transform=ax.get_yaxis_transform(), ha="right", va="top", fontsize=7,
            color="0.45", bbox=box, zorder=5)
    ax.plot(panel.orders, panel.level_db, color="0.2", lw=0.6, zorder=2)
    for n, (line, (label, colour)) in enumerate(LINE_STYLES.items()):
        order = orders[evidence.LINES[line]]
        for k in range(1, evidence.HARMONICS + 1):
            ax.axvline(k * order, color=colour, lw=1.0 if k == 1 else 0.7,
                       ls="-" if k == 1 else ":", alpha=0.7, zorder=1)
        height = panel.evidence.get(f"{line}_h1_db", 0.0)
        over = height >= LINE_DB
        ax.plot(order, height, "o", ms=5, color=colour, mfc=colour if over else "white", zorder=3)
        # labels stagger in height so that close lines (BPFO, BPFI) stay apart
        ax.text(order, y_top - 1.5 - 5.0 * (n % 2), f" {label} {height:.0f} dB", color=colour,
                fontsize=7, ha="left", va="top", weight="bold" if over else "normal", zorder=4)


def plot(panels: Sequence[Panel], path: Path, heading: str = ""):
    """Write one panel per window to ``path`` (PNG) and return the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("no panels to plot: pass at least one measured window")
    y_top = max(Y_LIMITS_DB[1], *(float(p.level_db.max()) + 8.0 for p in panels if p.level_db.size))
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 2.7 * len(panels)), sharex=True,
                             sharey=True, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        _draw(ax, panel, y_top)
        ax.set_ylim(Y_LIMITS_DB[0], y_top)
        ax.set_ylabel("dB over local floor")
        ax.set_title(title(panel), loc="left", fontsize=9, weight="bold", pad=16)
        text, colour = reading(panel)
        ax.set_title(text, loc="right", fontsize=8, pad=16, color=colour)
        ax.tick_params(labelbottom=True, labelsize=8)
        fr = panel.rpm / 60.0
        hz_axis = ax.secondary_xaxis("top", functions=(lambda o, fr=fr: o * fr,
                                                       lambda hz, fr=fr: hz / fr))
        hz_axis.tick_params(labelsize=7, colors="0.4", pad=1)
        ax.text(1.0, 1.02, "Hz", transform=ax.transAxes, fontsize=7, color="0.4", ha="left")
    axes[-1, 0].set_xlabel("orders of shaft speed (envelope frequency / shaft frequency); "
                           "top axis: Hz at the panel's speed")
    axes[-1, 0].set_xlim(0, max(float(p.orders[-1]) for p in panels if p.orders.size))
    key = ("solid: 1x line, dotted: 2x and 3x; dot: the 1x line's height as the daemon "
           f"measures it (filled from {LINE_DB:g} dB)")
    fig.suptitle(f"{heading}\n{key}".strip(), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig
