"""Where diagnosis stops working: accuracy against SNR, rpm error, severity and slewing speed.

A classifier trained on the simulated slewing set of bench_baselines.py (SNR 0-12 dB, 1-12 rpm,
severity 0.5-1, three speed profiles, two bearings) is tested on fresh windows where one condition
is swept and the others are drawn as in training:

- SNR -10 .. +10 dB;
- the configured rpm off by -5 .. +5 % (features extracted with the wrong speed; the windows are
  the same for every error);
- fault severity 0.1 .. 2 (impact amplitude; healthy windows unchanged);
- slewing speed 1 .. 12 rpm.

Besides raw accuracy it reports the trust layer: the share of windows called a sensor fault
(quality checks; the rpm check looks for the ring-gear mesh line, on the shaft-angle axis when
speed varies) or
"unknown" (feature-range OOD detector + kinematic consistency, fitted on the training features,
threshold from the simulated test split), the accuracy on the rest, and the share of windows that
would raise a wrong bearing-fault alarm. The classifier is gradient
boosting by default (``--classical lr`` for logistic regression) or a language model directory
(``--model DIR``, loaded with slewguard.models.load, on ``--threads`` torch threads; texts via
textify; its stored OOD detector and kinematic thresholds are read as the daemon reads them,
``service.trust.load_trust``, and fitted here when the model has none).

Writes OUT/limits.json, OUT/limits.md, OUT/limits.png and prints the tables.

    .venv/bin/python bench/bench_limits.py --quick          # ~5-8 min on 2 shared cores
    .venv/bin/python bench/bench_limits.py --model out/model --out out/bench_limits_lm

Dense and pruned language model of the shipped build: ``--keep-dense DIR`` saves the fine-tuned
dense MiniLM the build prunes (same data, same seed; the pruned model is unchanged by it), then
one run per model:

    .venv/bin/slewguard build-default-model --keep-dense out/default_dense   # rebuilds the shipped
    # model too; --out out/default_pruned leaves slewguard/models/default alone (bit-identical)
    .venv/bin/python bench/bench_limits.py --model out/default_dense --out out/bench_limits_dense
    .venv/bin/python bench/bench_limits.py --model slewguard/models/default \
        --out out/bench_limits_default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_baselines import load_features, models, simulated_spec  # noqa: E402

from slewguard.models.ood import OodDetector, decide, fit_kinematic_thresholds  # noqa: E402
from slewguard.service.trust import load_trust  # noqa: E402
from slewguard.signal.datasets import _track  # noqa: E402
from slewguard.signal.features import FEATURE_NAMES, FeatureTable, extract  # noqa: E402
from slewguard.signal.kinematics import preset  # noqa: E402
from slewguard.signal.quality import QualityExpectations, QualityVerdict, check  # noqa: E402
from slewguard.signal.scenario import SimulationSpec  # noqa: E402
from slewguard.signal.simulate import simulate  # noqa: E402

SWEEPS = {
    "snr_db": (-10.0, -5.0, 0.0, 5.0, 10.0),
    "rpm_error_pct": (-5.0, -2.5, -1.0, 0.0, 1.0, 2.5, 5.0),
    "severity": (0.1, 0.25, 0.5, 1.0, 2.0),
    "rpm": (1.0, 2.0, 4.0, 6.0, 9.0, 12.0),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer windows per point")
    p.add_argument("--per-class", type=int, default=None, help="windows per class per point")
    p.add_argument("--classical", choices=("gbm", "lr"), default="gbm")
    p.add_argument("--model", type=Path, default=None, help="a slewguard model directory")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads with --model")
    p.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=list(SWEEPS))
    p.add_argument("--out", type=Path, default=Path("out/bench_limits"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.per_class = args.per_class or (5 if args.quick else 20)
    args.baseline_out = Path("out/bench_baselines")
    return args


class Classical:
    """A scikit-learn model on the feature vector."""

    def __init__(self, kind: str, data: dict, seed: int) -> None:
        name = "gradient boosting" if kind == "gbm" else "logistic regression"
        self.name, self.model = name, models(seed)[name]
        self.model.fit(np.nan_to_num(data["x_train"]), data["y_train"])

    def predict(self, table: FeatureTable) -> np.ndarray:
        return self.model.predict(np.nan_to_num(table.values))


class LanguageModel:
    """A slewguard FaultClassifier reading textify texts."""

    def __init__(self, path: Path) -> None:
        from slewguard.models import load

        self.clf, self.name = load(path), f"LM {path.name}"
        if self.clf.template_version != "t1":
            raise SystemExit(f"--model {path}: template {self.clf.template_version!r}; this "
                             "bench sweeps the t1 feature texts: pass a t1 model (e.g. "
                             "`slewguard build-default-model --keep-dense DIR --out DIR2`)")

    def predict(self, table: FeatureTable) -> np.ndarray:
        from slewguard.signal.textify import textify_table

        proba = self.clf.predict_proba(textify_table(table))
        return np.asarray(self.clf.classes)[proba.argmax(axis=1)]


def draw_jobs(variable: str, value: float, args, spec) -> list[dict]:
    """Per window: the training distribution, except ``variable`` fixed at ``value``."""
    point = [args.seed, list(SWEEPS).index(variable), int(value * 1000) + 10**6]
    rng = np.random.default_rng(point)
    jobs = []
    for fault in spec.classes:
        for _ in range(args.per_class):
            job = {"fault": fault, "bearing": str(rng.choice(spec.bearings)),
                   "rpm": rng.uniform(spec.rpm_min, spec.rpm_max),
                   "snr_db": rng.uniform(spec.snr_db_min, spec.snr_db_max),
                   "severity": rng.uniform(spec.severity_min, spec.severity_max),
                   "speed_profile": str(rng.choice(spec.speed_profiles)),
                   "seed": int(rng.integers(2**31 - 1)), "rpm_factor": 1.0}
            if variable == "rpm_error_pct":
                job["rpm_factor"] = 1 + value / 100
            elif variable in job:
                job[variable] = value
            jobs.append(job)
    return jobs


def window_table(job: dict, spec) -> tuple[FeatureTable, QualityVerdict]:
    """Simulate one window; its features and quality verdict under the configured rpm.

    The configured rpm (or rpm trace) is the true one x ``rpm_factor``; the quality check looks
    for the ring gear's mesh line (order GearSpec.ring_teeth) where that speed puts it.
    """
    params = {k: job[k] for k in ("fault", "bearing", "rpm", "snr_db", "severity",
                                  "speed_profile")}
    sim_spec = SimulationSpec(**params, sample_rate_hz=spec.sample_rate_hz,
                              window_seconds=spec.window_seconds)
    sim = simulate(sim_spec, seed=job["seed"])
    f = job["rpm_factor"]
    trace = None if sim.rpm_trace is None else sim.rpm_trace * np.float32(f)
    table = extract(sim.windows, spec.sample_rate_hz, preset(job["bearing"]),
                    rpm=None if trace is not None else sim.rpm * f, rpm_trace=trace)
    expected = QualityExpectations(sample_rate_hz=spec.sample_rate_hz,
                                   rpm=float(sim.rpm[0] * f), constant_speed=trace is None,
                                   order_lines=(float(sim_spec.gear.ring_teeth),))
    return table, check(sim.windows, spec.sample_rate_hz, expected, rpm_trace=trace)[0]


def evaluate_point(jobs: list[dict], spec, classifier, trust) -> dict:
    detector, min_db = trust
    tables, quality = zip(*(window_table(j, spec) for j in jobs), strict=True)
    table = FeatureTable(FEATURE_NAMES, np.concatenate([t.values for t in tables]))
    truth = np.array([j["fault"] for j in jobs])
    predicted = classifier.predict(table)
    scores = detector.score(table)
    verdicts = np.array([decide(p, table.row(i), quality=quality[i], ood_score=float(scores[i]),
                                detector=detector, min_db=min_db).verdict
                         for i, p in enumerate(predicted)])
    sensor = np.char.startswith(verdicts.astype(str), "sensor_fault:")
    known = (verdicts != "unknown") & ~sensor
    return {"accuracy": float(np.mean(predicted == truth)), "n": len(jobs),
            "unknown": float(np.mean(verdicts == "unknown")),
            "sensor_fault": float(np.mean(sensor)),
            "accuracy_known": float(np.mean(verdicts[known] == truth[known])) if known.any()
            else None,
            "wrong_fault_alarms": float(np.mean(known & (verdicts != truth)
                                                & (verdicts != "healthy")))}


def plot(results: dict, name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"snr_db": "SNR (dB)", "rpm_error_pct": "configured rpm error (%)",
              "severity": "fault severity", "rpm": "shaft speed (rpm)"}
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, (variable, points) in zip(axes[0], results.items(), strict=True):
        xs = [p["value"] for p in points]
        ax.plot(xs, [100 * p["accuracy"] for p in points], "o-", label="accuracy")
        ax.plot(xs, [np.nan if p["accuracy_known"] is None else 100 * p["accuracy_known"]
                     for p in points], "s--", label="accuracy on the rest")
        ax.plot(xs, [100 * (p["unknown"] + p["sensor_fault"]) for p in points], "^:",
                label="unknown or sensor fault")
        ax.plot(xs, [100 * p["wrong_fault_alarms"] for p in points], "x-.",
                label="wrong fault alarms")
        ax.set(xlabel=labels[variable], ylabel="%", ylim=(0, 102))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"limits of {name} (simulated slewing bearings)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(results: dict, name: str, args) -> str:
    lines = [f"# bench_limits ({'quick' if args.quick else 'full'}): {name}, "
             f"{args.per_class} windows per class per point", ""]
    for variable, points in results.items():
        lines += [f"## {variable}", "", "| value | accuracy % | unknown % | sensor fault % | "
                  "accuracy on the rest % | wrong fault alarms % |", "|---|---|---|---|---|---|"]
        lines += [f"| {p['value']:g} | {_pct(p['accuracy'])} | {_pct(p['unknown'])} | "
                  f"{_pct(p['sensor_fault'])} | {_pct(p['accuracy_known'])} | "
                  f"{_pct(p['wrong_fault_alarms'])} |" for p in points]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    spec = simulated_spec(args.quick, args.seed)
    base = argparse.Namespace(out=args.baseline_out, quick=args.quick, seed=args.seed,
                              features="tree")  # the band search of its classical baselines
    data = load_features("simulated-slewing", base)
    if args.model:
        import torch

        torch.set_num_threads(args.threads)
    classifier = LanguageModel(args.model) if args.model else Classical(args.classical, data,
                                                                          args.seed)
    train = FeatureTable(FEATURE_NAMES, data["x_train"])
    detector = OodDetector().fit(train).calibrate(FeatureTable(FEATURE_NAMES, data["x_test"]))
    trust = (detector, fit_kinematic_thresholds(train, data["y_train"]))
    if args.model:  # the model's own pieces, read as the daemon reads them (both card layouts)
        stored = load_trust(classifier.clf, args.model)
        trust = (stored.detector or trust[0], stored.min_db or trust[1])
    results = {}
    points = [(v, x) for v in args.sweeps for x in SWEEPS[v]]
    for variable, value in _track(points, "sweeping", True):
        jobs = draw_jobs(variable, value, args, spec)
        results.setdefault(variable, []).append(
            {"value": value, **evaluate_point(jobs, spec, classifier, trust)})
        (args.out / "limits.json").write_text(json.dumps(
            {"classifier": classifier.name, "results": results}, indent=1))
    table = markdown(results, classifier.name, args)
    (args.out / "limits.md").write_text(table)
    plot(results, classifier.name, args.out / "limits.png")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
