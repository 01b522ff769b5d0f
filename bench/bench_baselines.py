"""Classical baselines on the language model's own features and protocols.

Logistic regression (standardised features) and gradient boosting (scikit-learn's histogram GBM)
are trained on ``features.extract`` of the same windows the language model reads as text: CWRU
faults-3class and paper-4class (train 0-2 HP, test 3 HP, no recording on both sides) and a
simulated slewing set (healthy, inner race, outer race, rolling element; 2 bearings, 1-12 rpm,
three speed profiles, SNR 0-12 dB). Reports test accuracy, per-window latency (model only,
batch 1, median of ``--runs``; feature extraction shown once per data set) and model size
(pickled bytes). Language-model rows join from ``--lm-results`` (bench/bench_prune.py's
results.json: dense and pruned rows per protocol) when that file exists.

Writes OUT/results.json, OUT/results.md, OUT/reliability_<set>_<model>.png,
OUT/features_v2_<set>.npz (cache) and prints the table. Calibration (temperature scaling, ECE)
and the OOD share of the test set come from a refit without a validation part of the training set.

    .venv/bin/python bench/bench_baselines.py --quick   # ~3-5 min on 2 shared cores
    .venv/bin/python bench/bench_baselines.py           # larger simulated set
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import time
from pathlib import Path

import numpy as np

from slewguard.models.calibrate import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)
from slewguard.models.ood import OodDetector, window_features
from slewguard.signal.datasets import (
    DatasetMissingError,
    SimulatedDatasetSpec,
    load_cwru,
    simulate_dataset,
)
from slewguard.signal.features import FEATURE_NAMES, FeatureTable

# One thread, as on an edge box: OpenMP thread start-up dominates a one-window prediction
# (measured ~200 ms per window for the GBM with the default pool on 2 busy cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
SETS = ("cwru-faults-3class", "cwru-paper-4class", "simulated-slewing")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller simulated set, fewer runs")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--runs", type=int, default=None, help="latency runs (default 51, quick 21)")
    p.add_argument("--lm-results", type=Path, default=Path("out/bench_prune/results.json"))
    p.add_argument("--out", type=Path, default=Path("out/bench_baselines"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.runs = args.runs or (21 if args.quick else 51)
    return args


def simulated_spec(quick: bool, seed: int = 0) -> SimulatedDatasetSpec:
    """The simulated slewing set used by the baselines and the limits bench."""
    return SimulatedDatasetSpec(windows_per_class=24 if quick else 60,
                                window_seconds=20.0 if quick else 30.0,
                                bearings=("slew-4pc-1000", "slew-xr-1000"), seed=seed)


def load_features(name: str, args) -> dict | None:
    """{"x_train", "y_train", "x_test", "y_test", "extract_ms", "load_hp_train", "note"} (npz)."""
    cache = args.out / f"features_v2_{name}{'_quick' if args.quick else ''}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            return {k: data[k] for k in data.files} | {"note": str(np.load(cache)["note"])}
    try:
        split = (simulate_dataset(simulated_spec(args.quick, args.seed), progress=True)
                 if name == "simulated-slewing"
                 else load_cwru(protocol=name.removeprefix("cwru-"), progress=True))
    except DatasetMissingError as exc:
        print(f"skipping {name}: {exc}")
        return None
    start = time.perf_counter()
    train = window_features(split.train, progress=True)
    test = window_features(split.test, progress=True)
    extract_ms = 1e3 * (time.perf_counter() - start) / (len(train) + len(test))
    data = {"x_train": train.values, "y_train": split.train.labels, "x_test": test.values,
            "y_test": split.test.labels, "extract_ms": np.float64(extract_ms),
            "load_hp_train": split.train.load_hp,
            "note": np.str_(split.note)}
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data | {"note": split.note}


def models(seed: int) -> dict:
    """The classical models, unfitted."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic regression": make_pipeline(StandardScaler(),
                                              LogisticRegression(max_iter=5000, C=1.0)),
        "gradient boosting": HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1,
                                                            random_state=seed),
    }


def latency_ms(model, x: np.ndarray, runs: int) -> float:
    """Median wall time of one single-window prediction, ms (one warm-up)."""
    one = x[:1]
    model.predict(one)
    times = []
    for i in range(runs):
        row = x[i % len(x)][None]
        start = time.perf_counter()
        model.predict(row)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def validation_mask(data: dict, seed: int) -> np.ndarray:
    """Training windows held out for calibration: CWRU's 2 HP recordings, else a random 25 %."""
    load = data["load_hp_train"]
    if np.isfinite(load).all() and (load == 2).any():
        return load == 2
    return np.random.default_rng(seed).random(len(load)) < 0.25


def trust_numbers(name: str, model_name: str, data: dict, args) -> dict:
    """Fit on the training windows minus validation; T and the OOD threshold on validation."""
    val = validation_mask(data, args.seed)
    x_fit, x_val = np.nan_to_num(data["x_train"][~val]), np.nan_to_num(data["x_train"][val])
    model = models(args.seed)[model_name].fit(x_fit, data["y_train"][~val])
    classes = list(model.classes_)
    y_val = np.array([classes.index(c) for c in data["y_train"][val]])
    keep = np.isin(data["y_test"], classes)
    y_test = np.array([classes.index(c) for c in data["y_test"][keep]])
    p_test = model.predict_proba(np.nan_to_num(data["x_test"][keep]))
    t = fit_temperature(np.log(np.clip(model.predict_proba(x_val), 1e-30, 1)), y_val)
    p_cal = apply_temperature(p_test, t)
    slug = f"{name}_{model_name.replace(' ', '_')}"
    reliability_diagram(p_cal, y_test, args.out / f"reliability_{slug}.png",
                        title=f"{name} {model_name}, T={t:.2f}")
    detector = OodDetector().fit(FeatureTable(FEATURE_NAMES, data["x_train"][~val]))
    detector.calibrate(FeatureTable(FEATURE_NAMES, data["x_train"][val]))
    return {"temperature": t, "ece_before": expected_calibration_error(p_test, y_test),
            "ece_after": expected_calibration_error(p_cal, y_test),
            "test_ood_share": float(detector.is_ood(FeatureTable(FEATURE_NAMES,
                                                                 data["x_test"])).mean())}


def run_set(name: str, data: dict, args) -> list[dict]:
    records = []
    x_train, x_test = np.nan_to_num(data["x_train"]), np.nan_to_num(data["x_test"])
    for model_name, model in models(args.seed).items():
        start = time.perf_counter()
        model.fit(x_train, data["y_train"])
        fit_s = time.perf_counter() - start
        predicted = model.predict(x_test)
        records.append({
            "set": name, "model": model_name, "accuracy": float(np.mean(predicted ==
                                                                        data["y_test"])),
            "n_train": len(x_train), "n_test": len(x_test),
            "latency_ms": latency_ms(model, x_test, args.runs),
            "extract_ms": float(data["extract_ms"]), "size_kb": len(pickle.dumps(model)) / 1024,
            "fit_s": fit_s, "n_features": len(FEATURE_NAMES),
            **trust_numbers(name, model_name, data, args)})
        print(f"[{name}] {model_name}: {records[-1]['accuracy']:.4f}", flush=True)
    return records


def lm_records(path: Path) -> list[dict]:
    """Language-model rows from bench_prune's results.json, averaged over seeds."""
    if not path.is_file():
        return []
    groups: dict[tuple, list[dict]] = {}
    for r in json.loads(path.read_text()):
        if "error" in r or r.get("accuracy") is None:
            continue
        label = ("LM dense" if r["method"] == "dense"
                 else f"LM {r['method']} {r.get('target_ratio', r['ratio']):g}x")
        groups.setdefault((f"cwru-{r['protocol']}", label), []).append(r)
    return [{"set": s, "model": label, "accuracy": float(np.mean([r["accuracy"] for r in rs])),
             "latency_ms": _median(rs, "latency_b1_ms"), "size_kb": 1024 * _median(rs,
                                                                                   "weight_mb"),
             "n_seeds": len(rs), "source": str(path)} for (s, label), rs in groups.items()]


def _median(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(statistics.median(values)) if values else float("nan")


def markdown(records: list[dict], extract: dict[str, float], args) -> str:
    lines = [f"# bench_baselines ({'quick' if args.quick else 'full'})", "",
             "| set | model | test accuracy % | latency / window ms (model, batch 1) | size KB "
             "| ECE before -> after T | test OOD % |", "|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (SETS.index(r["set"]) if r["set"] in SETS else 9,
                                            r["model"])):
        ece = (f"{r['ece_before']:.3f} -> {r['ece_after']:.3f} (T {r['temperature']:.2f})"
               if "temperature" in r else "-")
        ood = f"{100 * r['test_ood_share']:.1f}" if "test_ood_share" in r else "-"
        lines.append(f"| {r['set']} | {r['model']} | {100 * r['accuracy']:.2f} | "
                     f"{r['latency_ms']:.2f} | {r['size_kb']:,.0f} | {ece} | {ood} |")
    lines += ["", "Feature extraction (shared by every model), ms per window: "
              + ", ".join(f"{k} {v:.1f}" for k, v in extract.items()), "",
              "ECE and OOD: the model refitted without a validation part of the training set "
              "(CWRU: the 2 HP recordings; simulated: a random 25 %); temperature and OOD "
              "threshold fitted on that part, measured on the test set.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    records, extract = [], {}
    for name in args.sets:
        data = load_features(name, args)
        if data is None:
            continue
        extract[name] = float(data["extract_ms"])
        records += run_set(name, data, args)
    records += lm_records(args.lm_results)
    (args.out / "results.json").write_text(json.dumps(records, indent=1))
    table = markdown(records, extract, args)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
