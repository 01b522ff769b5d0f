"""Speed from the signal: how well ``evidence.estimate_speed`` finds the true shaft speed.

1. UESTC: its README reads the true speed of eight conditions off their defect line (outer race
   at 2.96-3.24 orders of the nominal speed, inner race at 4.81-4.94): the fitted speed scale
   per condition (median over its 2 s windows, +-8 % search) against that reading.
2. The randomised simulator (``signal.randomise``): every machine's speed label is off by up to
   +-6 %; the error of the estimate per class, and the envelope rule's accuracy with the
   estimate against the same rule trusting the label (lines +-2 %), same windows.

    .venv/bin/python bench/bench_speed.py              # ~2 min
    .venv/bin/python bench/bench_speed.py --machines 80
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from slewguard.signal import evidence
from slewguard.signal.kinematics import preset
from slewguard.signal.randomise import randomised_sets
from slewguard.signal.rule import envelope_rule
from slewguard.signal.uestc import default_uestc_root, load_uestc_all

UNCERTAINTY = 0.08
# UESTC README: the strongest envelope line in orders of the nominal speed, per condition
# (midpoint of the stated range) and the geometry's order of that line.
UESTC_LINES = {"uestc-O_800": (2.975, 3.052), "uestc-O_1000": (3.0465, 3.052),
               "uestc-O_1200": (3.19, 3.052), "uestc-O_1400": (3.235, 3.052),
               "uestc-I_800": (4.81, 4.948), "uestc-I_1000": (4.86, 4.948),
               "uestc-I_1200": (4.86, 4.948), "uestc-I_1400": (4.939, 4.948)}


def uestc_table() -> list[dict]:
    ws = load_uestc_all(default_uestc_root(), window_seconds=2.0)
    g = preset(ws.bearing)
    rows = []
    for rec, (line, order) in UESTC_LINES.items():
        idx = np.flatnonzero(ws.recording == rec)
        scales = [evidence.extract(ws.windows[i], ws.sample_rate_hz, g, float(ws.rpm[i]),
                                   UNCERTAINTY)["speed_scale"] for i in idx]
        ref = line / order
        rows.append({"condition": rec, "reference_scale": ref,
                     "fitted_scale_median": float(np.median(scales)),
                     "error_pct": 100 * (float(np.median(scales)) - ref) / ref,
                     "windows_within_0.5pct": float(np.mean(np.abs(np.array(scales) - ref)
                                                           / ref < 0.005)),
                     "windows": len(idx)})
    return rows


def sim_table(machines: int, seed: int) -> dict:
    errors: dict[str, list[float]] = {}
    hits = {"estimated": [], "label": []}
    for ws in randomised_sets(machines, windows_per_class=3, baseline_windows=0, seed=seed):
        g = preset(ws.bearing)
        true = float(ws.meta["rpm_true"][0])
        for x, label, rpm in zip(ws.windows, ws.labels, ws.rpm, strict=True):
            fitted = evidence.extract(x, ws.sample_rate_hz, g, float(rpm), UNCERTAINTY)
            trusted = evidence.extract(x, ws.sample_rate_hz, g, float(rpm), 0.0)
            errors.setdefault(str(label), []).append(
                100 * abs(rpm * fitted["speed_scale"] - true) / true)
            if label in ("inner_race", "outer_race"):  # line faults: what the speed is for
                for key, row in (("estimated", fitted), ("label", trusted)):
                    hits[key].append(envelope_rule(row)[0] == label)
    return {"error_pct_median": {c: float(np.median(v)) for c, v in errors.items()},
            "within_0.5pct": {c: float(np.mean(np.array(v) < 0.5)) for c, v in errors.items()},
            "race_fault_recall": {k: float(np.mean(v)) for k, v in hits.items()},
            "windows": {c: len(v) for c, v in errors.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machines", type=int, default=40)
    ap.add_argument("--seed", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("bench/results/speed.json"))
    args = ap.parse_args()
    out = {"uestc": uestc_table(), "sim": sim_table(args.machines, args.seed)}
    print("| UESTC condition | speed from its README line | fitted (median) | error | "
          "windows within 0.5 % |\n|---|---|---|---|---|")
    for r in out["uestc"]:
        print(f"| {r['condition']} | {r['reference_scale']:.4f} | "
              f"{r['fitted_scale_median']:.4f} | {r['error_pct']:+.2f} % | "
              f"{r['windows_within_0.5pct']:.0%} of {r['windows']} |")
    s = out["sim"]
    print("\n| simulated class | windows | median error of the estimate | within 0.5 % |\n"
          "|---|---|---|---|")
    for c, n in s["windows"].items():
        print(f"| {c} | {n} | {s['error_pct_median'][c]:.2f} % | {s['within_0.5pct'][c]:.0%} |")
    r = s["race_fault_recall"]
    print(f"\nenvelope rule, inner/outer race windows: recall {r['estimated']:.1%} with the "
          f"estimated speed, {r['label']:.1%} trusting the label (+-2 % lines)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
