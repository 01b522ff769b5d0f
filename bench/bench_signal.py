"""Signal-stage throughput: simulate(), features.extract() and quality.check() in windows/s.

Two window shapes (10 s at 25.6 kHz, 60 s at 5 kHz), a batch and a single window each, median of
``--runs`` timed runs after one warm-up; extract() once per band search (``--methods``: the
kurtogram tree and the one-STFT search, in the same run), the rig-invariant evidence
(``evidence.extract``, with the rpm measured and with the speed fitted), and the checks the
daemon runs before them (quality.check). Prints a markdown table; "x real time"
is seconds of signal handled per second of wall time on one process. ``--fft numpy scipy`` times
the feature stages with each FFT library in the same run (the base install has numpy's only;
slewguard/signal/fft.py).

    .venv/bin/python bench/bench_signal.py            # about 1-2 minutes on 2 shared cores
    .venv/bin/python bench/bench_signal.py --runs 7 --speed-profile oscillating
    .venv/bin/python bench/bench_signal.py --fft numpy scipy --methods stft
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.progress import Progress

from slewguard.signal import evidence, fft, quality
from slewguard.signal.features import METHODS, extract
from slewguard.signal.scenario import SimulationSpec
from slewguard.signal.simulate import simulate

SHAPES = ((25_600.0, 10.0), (5_000.0, 60.0))  # (sample_rate_hz, window_seconds)


@dataclass
class Case:
    stage: str
    spec: SimulationSpec
    batch: int
    run: Callable[[int], object]  # run(seed) does the work once


@dataclass
class Result:
    case: Case
    median_s: float

    def row(self) -> str:
        spec, per_s = self.case.spec, self.case.batch / self.median_s
        return (
            f"| {self.case.stage} | {spec.window_seconds:g} s @ {spec.sample_rate_hz / 1e3:g} kHz "
            f"| {spec.n_samples:,} | {self.case.batch} | {self.median_s * 1e3:,.1f} "
            f"| {per_s:,.2f} | {1e3 / per_s:,.1f} | {per_s * spec.window_seconds:,.0f} |"
        )


def build_cases(args: argparse.Namespace) -> list[Case]:
    """Every (stage, shape, batch) to time; extraction inputs are simulated once, untimed."""
    cases = []
    for fs, seconds in SHAPES:
        spec = SimulationSpec(
            fault=args.fault,
            sample_rate_hz=fs,
            window_seconds=seconds,
            speed_profile=args.speed_profile,
        )
        sim = simulate(spec, args.extract_batch, seed=12345)
        bearing = spec.geometry()
        for batch in (args.batch, 1):
            cases.append(
                Case("simulate", spec, batch, lambda s, sp=spec, b=batch: simulate(sp, b, s))
            )
        for method in args.methods:
            for batch in (args.extract_batch, 1):
                trace = None if sim.rpm_trace is None else sim.rpm_trace[:batch]

                def run(_seed: int, b=batch, x=sim, tr=trace, f=fs, g=bearing, m=method) -> object:
                    return extract(x.windows[:b], f, g, rpm=x.rpm[:b], rpm_trace=tr, method=m)

                cases.append(Case(f"extract ({method})", spec, batch, run))
        for su, label in ((0.0, "rpm measured"), (0.08, "speed fitted +-8 %")):
            for batch in (args.extract_batch, 1):
                def run_ev(_seed: int, b=batch, x=sim, f=fs, g=bearing, u=su) -> object:
                    return [evidence.extract(w, f, g, float(r), u)
                            for w, r in zip(x.windows[:b], x.rpm[:b], strict=True)]

                cases.append(Case(f"evidence ({label})", spec, batch, run_ev))
        for batch in (args.extract_batch, 1):
            cases.append(Case("quality checks", spec, batch,
                              lambda _s, b=batch, x=sim, f=fs: quality.check(x.windows[:b], f)))
    return cases


def with_backend(cases: list[Case], name: str, label: bool) -> list[Case]:
    """``cases`` run on FFT library ``name`` ("scipy" or "numpy"), labelled with it if asked."""
    module = fft.scipy_backend() if name == "scipy" else None  # what the daemon calls

    def pinned(run: Callable[[int], object]) -> Callable[[int], object]:
        def call(seed: int) -> object:
            fft.BACKEND = module
            return run(seed)
        return call

    return [Case(f"{c.stage} [{name}]" if label else c.stage, c.spec, c.batch, pinned(c.run))
            for c in cases]


def time_case(case: Case, runs: int, advance: Callable[[], None]) -> Result:
    """One warm-up, then the median wall time of ``runs`` calls."""
    case.run(0)
    times = []
    for seed in range(1, runs + 1):
        start = time.perf_counter()
        case.run(seed)
        times.append(time.perf_counter() - start)
        advance()
    return Result(case, statistics.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--batch", type=int, default=16, help="windows per simulate() batch")
    parser.add_argument("--extract-batch", type=int, default=8, help="windows per extract() batch")
    parser.add_argument("--fault", default="inner_race")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="extract() band searches to time")
    parser.add_argument(
        "--speed-profile", default="constant", choices=("constant", "oscillating", "stop_start")
    )
    parser.add_argument("--fft", nargs="+", choices=("scipy", "numpy"), default=[fft.backend()],
                        help="FFT libraries to time the feature stages with (default: the one "
                        "installed, scipy's where both are)")
    args = parser.parse_args()
    if args.runs < 5:
        parser.error(f"--runs={args.runs}: use at least 5 so the median means something")
    cases = build_cases(args)
    staged = [c for c in cases if c.stage != "simulate"]  # the simulator is scipy's either way
    cases = [c for c in cases if c.stage == "simulate"] + [
        c for name in args.fft for c in with_backend(staged, name, len(args.fft) > 1)]
    with Progress(transient=True) as progress:
        task = progress.add_task("timing", total=len(cases) * args.runs)
        results = []
        for case in cases:
            progress.update(task, description=f"{case.stage} x{case.batch}")
            results.append(time_case(case, args.runs, lambda: progress.advance(task)))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nslewguard signal throughput: fault={args.fault}, speed_profile={args.speed_profile}, "
        f"median of {args.runs} runs; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load}, numpy {np.__version__}, "
        f"FFT {' and '.join(args.fft)}\n"
    )
    print(
        "| stage | window | samples | batch | median ms per call | windows/s | ms per window "
        "| x real time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())


if __name__ == "__main__":
    main()
