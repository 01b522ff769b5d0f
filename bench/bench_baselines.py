"""Classical baselines beside the dense and the pruned language model, one table per run.

Logistic regression (standardised features) and gradient boosting (scikit-learn's histogram GBM)
are trained on ``features.extract`` of the same windows the language model reads as text: CWRU
faults-3class and paper-4class (train 0-2 HP, test 3 HP, no recording on both sides) and a
simulated slewing set (healthy, inner race, outer race, rolling element; 2 bearings, 1-12 rpm,
three speed profiles, SNR 0-12 dB).

With ``--lm`` (the default) the language model is built on each set as the shipped model is
(``slewguard.models.default.train_and_prune``): the set's training texts (textify of the same
features) less a stratified 20 % held out for validation and temperature, MiniLM with its
vocabulary trimmed, fine-tuned (``--lm-epochs``, ``--lm-batch-size``: 10 and 16 by default, as
the sets are smaller than the build's), pruned with the cascade to ``--lm-ratio`` (recovery
epochs x ``--lm-epoch-scale``, stage shares pinned as in the build) and fine-tuned again
(``--lm-finetune-epochs``). The dense and the pruned model are saved and loaded back before
they are measured, on ``--threads`` torch threads (default 1).

Per model: test accuracy, latency per window at batch 1 (median of ``--runs`` on one thread;
classical: ``predict`` on one feature row; language model: tokenising one text + forward pass;
feature extraction, shared by all, shown once per data set), size (classical: pickled bytes;
language model: weight files) and calibration: temperature fitted on held-out training windows
(classical: refit without CWRU's 2 HP recordings or a random 25 %), kept only when it helps out
of sample (``calibrate.calibration_record``), ECE on the test set before and after. Rows of
bench/bench_prune.py (``--lm-results``) join, marked, when that file exists.

Writes OUT/results.json, OUT/results.md, OUT/reliability_<set>_<model>.png,
OUT/features_<key>_<method>_<set>.npz (cache; the key hashes the signal code, so a change of the
features re-extracts) and prints the table. ``--features`` picks the band search.

    .venv/bin/python bench/bench_baselines.py --quick --no-lm   # classical only: ~3-5 min
    .venv/bin/python bench/bench_baselines.py --quick           # + dense/pruned MiniLM, few epochs
    .venv/bin/python bench/bench_baselines.py                   # shipped-build epochs, 60/class
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from slewguard.models.calibrate import (
    apply_temperature,
    calibration_record,
    expected_calibration_error,
    reliability_diagram,
)
from slewguard.models.ood import OodDetector, window_features
from slewguard.signal.cwru import load_cwru
from slewguard.signal.datasets import (
    DatasetMissingError,
    SimulatedDatasetSpec,
    simulate_dataset,
)
from slewguard.signal.features import FEATURE_NAMES, METHODS, FeatureTable

# One thread, as on an edge box: OpenMP thread start-up dominates a one-window prediction
# (measured ~200 ms per window for the GBM with the default pool on 2 busy cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
SETS = ("cwru-faults-3class", "cwru-paper-4class", "simulated-slewing")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller simulated set, fewer runs")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--runs", type=int, default=None, help="latency runs (default 51, quick 21)")
    p.add_argument("--lm", action=argparse.BooleanOptionalAction, default=True,
                   help="build and measure the dense and pruned language model on every set")
    p.add_argument("--lm-family", default="minilm", help="backbone (backbones.SUPPORTED_FAMILIES)")
    p.add_argument("--lm-epochs", type=int, help="dense fine-tuning epochs (default 10, quick 6)")
    p.add_argument("--lm-batch-size", type=int, help="texts per step (default 16)")
    p.add_argument("--lm-epoch-scale", type=float, help="cascade recovery epochs x this (paper "
                   "10/10/30; default 0.2 as the shipped build, quick 0.1)")
    p.add_argument("--lm-finetune-epochs", type=int, help="full fine-tuning after the cascade "
                   "(default 8 as the shipped build, quick 4)")
    p.add_argument("--lm-ratio", type=float, default=8.0, help="cascade body compression")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--lm-results", type=Path, default=Path("out/bench_prune/results.json"))
    p.add_argument("--out", type=Path, default=Path("out/bench_baselines"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--features", choices=METHODS, default="tree",
                   help="features.extract band search (the language model reads the same)")
    args = p.parse_args(argv)
    args.runs = args.runs or (21 if args.quick else 51)
    # The sets hold 56-220 training texts, fewer than the shipped build's 350: at its batch of 32
    # and 6 epochs dense MiniLM stayed at 67% on CWRU faults-3class (quick run), at 16 and 10 it
    # reached 97%.
    defaults = {"lm_epochs": (10, 6), "lm_batch_size": (16, 16), "lm_epoch_scale": (0.2, 0.1),
                "lm_finetune_epochs": (8, 4)}
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    return args


def simulated_spec(quick: bool, seed: int = 0) -> SimulatedDatasetSpec:
    """The simulated slewing set used by the baselines and the limits bench."""
    return SimulatedDatasetSpec(windows_per_class=24 if quick else 60,
                                window_seconds=20.0 if quick else 30.0,
                                bearings=("slew-4pc-1000", "slew-xr-1000"), seed=seed)


def features_key() -> str:
    """8 hex digits of the signal code the cached features come from (a change re-extracts).

    Example:
        >>> len(features_key())
        8
    """
    from slewguard.signal import (
        band_search,
        datasets,
        features,
        kinematics,
        kurtogram,
        lines,
        numeric,
        simulate,
        stft_envelope,
    )

    digest = hashlib.sha256()
    for module in (band_search, datasets, features, kinematics, kurtogram, lines, numeric,
                   simulate, stft_envelope):
        digest.update(Path(module.__file__).read_bytes())
    digest.update((Path(kinematics.__file__).parent / "bearings.csv").read_bytes())
    return digest.hexdigest()[:8]


def load_features(name: str, args) -> dict | None:
    """{"x_train", "y_train", "x_test", "y_test", "extract_ms", "load_hp_train", "note"} (npz)."""
    tag = f"{features_key()}_{args.features}_{name}{'_quick' if args.quick else ''}"
    cache = args.out / f"features_{tag}.npz"
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
    train = window_features(split.train, progress=True, method=args.features)
    test = window_features(split.test, progress=True, method=args.features)
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


def latency_ms(predict_one: Callable[[Any], Any], inputs: Sequence, runs: int) -> float:
    """Median wall time of ``predict_one`` on one window's input, ms (one warm-up).

    Example:
        >>> latency_ms(lambda row: model.predict(row[None]), x_test, 21)   # doctest: +SKIP
        0.21
    """
    predict_one(inputs[0])
    times = []
    for i in range(runs):
        one = inputs[i % len(inputs)]
        start = time.perf_counter()
        predict_one(one)
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
    calibration = calibrated_test(model.predict_proba(x_val), y_val, p_test, y_test,
                                  f"{name} {model_name}", args.out)
    detector = OodDetector().fit(FeatureTable(FEATURE_NAMES, data["x_train"][~val]))
    detector.calibrate(FeatureTable(FEATURE_NAMES, data["x_train"][val]))
    return {**calibration, "test_ood_share": float(detector.is_ood(FeatureTable(
        FEATURE_NAMES, data["x_test"])).mean())}


def calibrated_test(p_val: np.ndarray, y_val: np.ndarray, p_test: np.ndarray,
                    y_test: np.ndarray, title: str, out: Path) -> dict:
    """Temperature from the validation windows (applied only when it helps out of sample,
    ``calibration_record``), ECE on the test windows before / after, reliability PNG."""
    record = calibration_record(p_val, y_val)
    p_cal = apply_temperature(p_test, record["temperature"])
    slug = re.sub(r"[^A-Za-z0-9-]+", "_", title)
    reliability_diagram(p_cal, y_test, out / f"reliability_{slug}.png",
                        title=f"{title}, T={record['temperature']:.2f}")
    return {"temperature": record["temperature"],
            "temperature_fitted": record["temperature_fitted"], "scaling": record["reason"],
            "ece_before": expected_calibration_error(p_test, y_test),
            "ece_after": expected_calibration_error(p_cal, y_test)}


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
            "latency_ms": latency_ms(lambda row, m=model: m.predict(row[None]), x_test,
                                     args.runs),
            "extract_ms": float(data["extract_ms"]), "size_kb": len(pickle.dumps(model)) / 1024,
            "fit_s": fit_s, "n_features": len(FEATURE_NAMES),
            **trust_numbers(name, model_name, data, args)})
        print(f"[{name}] {model_name}: {records[-1]['accuracy']:.4f}", flush=True)
    return records


def lm_build_data(data: dict, classes: Sequence[str], calib_fraction: float, seed: int) -> Any:
    """The set as ``build_data.BuildData``: textify of the cached features; a stratified
    ``calib_fraction`` of the training windows held out (validation, temperature), as the
    shipped build does."""
    from slewguard.models.build_data import BuildData, Texts, holdout
    from slewguard.signal.textify import textify_table

    def part(split: str, side: str, idx: np.ndarray) -> Texts:
        x = data[f"x_{side}"][idx]
        return Texts(split, textify_table(FeatureTable(FEATURE_NAMES, x)),
                     [str(y) for y in data[f"y_{side}"][idx]], x)

    keep, held = holdout(SimpleNamespace(labels=data["y_train"]), calib_fraction, seed)
    test = part("test", "test", np.flatnonzero(np.isin(data["y_test"], list(classes))))
    return BuildData(part("train", "train", keep), part("calib", "train", held), [test])


def lm_config(args, classes: Sequence[str]) -> Any:
    """The shipped build's BuildConfig with this run's classes, epochs, ratio and threads."""
    from slewguard.models.build_config import BuildConfig

    return BuildConfig.for_mode(
        False, family=args.lm_family, classes=tuple(classes), seed=args.seed,
        target_ratio=args.lm_ratio, epochs=args.lm_epochs, epoch_scale=args.lm_epoch_scale,
        finetune_epochs=args.lm_finetune_epochs, batch_size=args.lm_batch_size,
        threads=args.threads)


def lm_rows(name: str, data: dict, args) -> list[dict]:
    """Dense and pruned language model on one set: build as the shipped model, save, reload,
    measure (``lm_measure``)."""
    from rich.console import Console

    from slewguard.models import load
    from slewguard.models.classifier import class_order
    from slewguard.models.default import train_and_prune

    config = lm_config(args, class_order([str(y) for y in data["y_train"]]))
    build = lm_build_data(data, config.classes, config.calib_fraction, config.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-baselines-lm-") as tmp:
        dense_dir, pruned_dir = Path(tmp) / "dense", Path(tmp) / "pruned"
        pruned, card = train_and_prune(config, build, Console().log, dense_out=dense_dir)
        pruned.save(pruned_dir)
        build_s = time.perf_counter() - start
        ratio = card["compression"]["ratio"]
        rows = [lm_measure(name, f"LM {config.family} dense", load(dense_dir), dense_dir, build,
                           args),
                lm_measure(name, f"LM {config.family} pruned {ratio:.1f}x", load(pruned_dir),
                           pruned_dir, build, args)]
    for row in rows:
        row.update(extract_ms=float(data["extract_ms"]), fit_s=build_s, build=config.model_dump(
            mode="json", include={"epochs", "epoch_scale", "finetune_epochs", "target_ratio",
                                  "batch_size"}))
        print(f"[{name}] {row['model']}: {row['accuracy']:.4f}", flush=True)
    return rows


def lm_measure(name: str, label: str, clf: Any, path: Path, build: Any, args) -> dict:
    """Accuracy, latency (tokenise + forward, batch 1), weight bytes, calibration of ``clf``."""
    from slewguard.models.prune import measure

    index = {c: i for i, c in enumerate(clf.classes)}
    test = build.tests[0]
    y_test = np.array([index[c] for c in test.labels])
    y_val = np.array([index[c] for c in build.calib.labels])
    p_test = clf.predict_proba(test.texts)
    return {"set": name, "model": label, "accuracy": float(np.mean(p_test.argmax(axis=1)
                                                                   == y_test)),
            "n_train": len(build.train), "n_test": len(test),
            "latency_ms": latency_ms(lambda text: clf.predict_proba([text]), test.texts,
                                     args.runs),
            "size_kb": measure.weight_bytes(path) / 1024,
            "body_parameters": measure.body_parameters(clf.model),
            **calibrated_test(clf.predict_proba(build.calib.texts), y_val, p_test, y_test,
                              f"{name} {label}", args.out)}


def lm_records(path: Path) -> list[dict]:
    """Language-model rows from bench_prune's results.json, averaged over seeds."""
    if not path.is_file():
        return []
    groups: dict[tuple, list[dict]] = {}
    for r in json.loads(path.read_text()):
        if "error" in r or r.get("accuracy") is None:
            continue
        label = ("LM dense [bench_prune]" if r["method"] == "dense"
                 else f"LM {r['method']} {r.get('target_ratio', r['ratio']):g}x [bench_prune]")
        groups.setdefault((f"cwru-{r['protocol']}", label), []).append(r)
    return [{"set": s, "model": label, "accuracy": float(np.mean([r["accuracy"] for r in rs])),
             "latency_ms": _median(rs, "latency_b1_ms"), "size_kb": 1024 * _median(rs,
                                                                                   "weight_mb"),
             "n_seeds": len(rs), "source": str(path)} for (s, label), rs in groups.items()]


def _median(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(statistics.median(values)) if values else float("nan")


def _calibration_cell(r: dict) -> str:
    if "temperature" not in r:
        return "-"
    fitted = r.get("temperature_fitted", r["temperature"])
    t = (f"T {r['temperature']:.2f}" if r["temperature"] != 1.0 or fitted == 1.0
         else f"T 1, fitted {fitted:.2f} rejected")
    return f"{r['ece_before']:.3f} -> {r['ece_after']:.3f} ({t})"


def markdown(records: list[dict], extract: dict[str, float], args) -> str:
    lines = [f"# bench_baselines ({'quick' if args.quick else 'full'})", "",
             "| set | model | train windows | test accuracy % | latency / window ms (model, "
             "batch 1) | size KB | ECE before -> after T | test OOD % |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (SETS.index(r["set"]) if r["set"] in SETS else 9,
                                            r["model"])):
        ood = f"{100 * r['test_ood_share']:.1f}" if "test_ood_share" in r else "-"
        lines.append(f"| {r['set']} | {r['model']} | {r.get('n_train', '-')} | "
                     f"{100 * r['accuracy']:.2f} | {r['latency_ms']:.2f} | {r['size_kb']:,.0f} | "
                     f"{_calibration_cell(r)} | {ood} |")
    lines += ["", "Feature extraction (shared by every model), ms per window: "
              + ", ".join(f"{k} {v:.1f}" for k, v in extract.items()), "",
              "Latency: median of single-window predictions on one thread; classical models "
              "take the feature row, language models tokenise the text and run the forward "
              "pass (textify itself is a few microseconds). Size: pickled model (classical), "
              "weight files (language models).", "",
              "Language models: trained as the shipped model is built, on the training windows "
              "less a stratified 20 % held out for validation and temperature; the temperature "
              "is applied only when it lowers NLL and does not raise ECE out of sample "
              "(cross-fitted on the held-out windows). Classical accuracy: fitted on every "
              "training window; their ECE and OOD columns: refitted without a validation part "
              "(CWRU: the 2 HP recordings; simulated: a random 25 %), temperature (same rule) "
              "and OOD threshold fitted on it, measured on the test set.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.lm:
        import torch
        from transformers.utils import logging as hf_logging

        torch.set_num_threads(args.threads)  # the shipped daemon's model.torch_threads
        hf_logging.set_verbosity_error()
    records, extract = [], {}
    for name in args.sets:
        data = load_features(name, args)
        if data is None:
            continue
        extract[name] = float(data["extract_ms"])
        records += run_set(name, data, args)
        if args.lm:
            records += lm_rows(name, data, args)
        (args.out / "results.json").write_text(json.dumps(records, indent=1))  # per set
    records += lm_records(args.lm_results)
    (args.out / "results.json").write_text(json.dumps(records, indent=1))
    table = markdown(records, extract, args)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
