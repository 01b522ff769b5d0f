"""Detection rate of features.extract: fraction of simulated windows whose class line is strongest.

For each case (bearing, rpm, window, SNR and its reference) and fault class, simulate
``--windows`` windows (seed ``--seed``), extract features in one batch and count the windows whose
strongest h1 envelope line (dB over the local floor) is the class's line (kinematics.FAULT_LINE;
"combined" counts BPFI or BPFO). Healthy windows give the noise lift: the median and max of their
strongest h1 line. Prints a markdown table.

SNR reference (scenario.SimulationSpec.snr_reference): "impacts" (the default) refers the noise to
a severity-1 outer-race impact train; "clean" to each window's whole clean signal, gear mesh
included, which at slewing speeds is 16-21 dB stronger than the impacts (its -5 dB is an impact
SNR of about -21 to -26 dB): both are printed.

    .venv/bin/python bench/bench_features_detection.py            # about 1 minute on 2 cores
    .venv/bin/python bench/bench_features_detection.py --windows 24 --seed 3
    .venv/bin/python bench/bench_features_detection.py --method stft   # the fast band search
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from rich.progress import Progress

from slewguard.signal.features import FEATURE_NAMES, METHODS, extract
from slewguard.signal.kinematics import FAULT_LINE, preset
from slewguard.signal.lines import LINES
from slewguard.signal.scenario import SimulationSpec
from slewguard.signal.simulate import simulate

H1 = [FEATURE_NAMES.index(f"env_{line}_h1_db") for line in LINES]
FAULTS = ("outer_race", "inner_race", "rolling_element", "cage")


@dataclass(frozen=True)
class Case:
    bearing: str
    rpm: float
    sample_rate_hz: float
    window_seconds: float
    snr_db: float
    faults: tuple[str, ...]
    snr_reference: str = "impacts"

    def label(self) -> str:
        return (
            f"{self.bearing} {self.rpm:g} rpm {self.window_seconds:g} s "
            f"@ {self.sample_rate_hz / 1e3:g} kHz, {self.snr_db:g} dB ({self.snr_reference})"
        )


SLEW = (*FAULTS[:3], "combined")
CASES = (
    Case("slew-4pc-1000", 6.0, 5000.0, 30.0, -5.0, SLEW),
    Case("slew-4pc-1000", 12.0, 5000.0, 30.0, -5.0, SLEW),
    Case("slew-xr-1000", 2.0, 5000.0, 60.0, -5.0, SLEW),
    Case("slew-4pc-1000", 6.0, 5000.0, 30.0, -10.0, SLEW),
    Case("slew-4pc-1000", 12.0, 5000.0, 120.0, -5.0, ("cage",)),
    Case("cwru-6205", 1797.0, 12000.0, 1.0, -5.0, (*FAULTS, "combined")),
    Case("cwru-6205", 1797.0, 12000.0, 4.0, -5.0, (*FAULTS, "combined")),
    Case("slew-4pc-1000", 6.0, 5000.0, 30.0, 0.0, SLEW, "clean"),
    Case("slew-4pc-1000", 6.0, 5000.0, 30.0, -5.0, SLEW, "clean"),
    Case("slew-4pc-1000", 6.0, 5000.0, 60.0, -5.0, SLEW, "clean"),
)


def run_fault(
    case: Case, fault: str, n_windows: int, seed: int, method: str
) -> tuple[np.ndarray, float]:
    """h1 line levels (n_windows, len(LINES)) of one class and the extract seconds per window."""
    spec = SimulationSpec(
        fault=fault,
        bearing=case.bearing,
        rpm=case.rpm,
        sample_rate_hz=case.sample_rate_hz,
        window_seconds=case.window_seconds,
        snr_db=case.snr_db,
        snr_reference=case.snr_reference,
    )
    sim = simulate(spec, n_windows=n_windows, seed=seed)
    start = time.perf_counter()
    table = extract(sim.windows, case.sample_rate_hz, preset(case.bearing), rpm=sim.rpm,
                    method=method)
    return table.values[:, H1], (time.perf_counter() - start) / n_windows


def hit_rate(levels: np.ndarray, fault: str) -> float:
    """Share of windows whose strongest h1 line is the class's (BPFI or BPFO for combined)."""
    lines = ("bpfi_hz", "bpfo_hz") if fault == "combined" else (FAULT_LINE[fault],)
    want = [LINES.index(line[: -len("_hz")]) for line in lines]
    return float(np.isin(levels.argmax(axis=1), want).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=12, help="simulated windows per class")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--method", choices=METHODS, default="tree", help="band search")
    args = parser.parse_args()
    if args.windows < 1:
        parser.error(f"--windows={args.windows}: pass at least 1")
    rows = []
    total = sum(len(c.faults) + 1 for c in CASES)
    with Progress(transient=True) as progress:
        task = progress.add_task("detection", total=total)
        for case in CASES:
            rates, ms = [], []
            for fault in (*case.faults, "healthy"):
                progress.update(task, description=f"{case.bearing} {case.snr_db:g} dB {fault}")
                levels, seconds = run_fault(case, fault, args.windows, args.seed, args.method)
                ms.append(seconds * 1e3)
                if fault == "healthy":
                    healthy = levels.max(axis=1)
                else:
                    rates.append(f"{fault} {100 * hit_rate(levels, fault):.0f}%")
                progress.advance(task)
            rows.append(
                f"| {case.label()} | {', '.join(rates)} | {np.median(healthy):.1f} / "
                f"{healthy.max():.1f} | {np.median(ms):.1f} |"
            )
    print(f"\nclass line strongest, {args.windows} windows per class, seed {args.seed}, "
          f"method {args.method}\n")
    print("| case | detection | healthy strongest h1 dB (median / max) | extract ms/window |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
