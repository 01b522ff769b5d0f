"""Leave one rig out: does a diagnosis hold on a machine it was not built on?

Three domains: ``sim`` (the randomised simulator, ``signal.randomise``: every machine its own
geometry, speed, resonances, gain, noise and speed-label error), ``cwru`` and ``uestc`` (two real
rigs). For each domain held out, the methods train on the other two; and, the case a
slewing-bearing user is in, on the simulator alone, tested on each real rig. Classes: healthy,
inner race, outer race, rolling element. Every method reads the same rig-invariant evidence of
the same windows (``signal.evidence``: defect-line prominence over the local envelope floor at
the geometry's orders, the speed fitted within +-8 % of the nominal one, whitened shape, level
relative to the bearing's own commissioning baseline).

Baselines: per bearing (a simulated machine; CWRU's rig; each UESTC speed) the first healthy
windows (CWRU: Normal's first 2 s; UESTC: the first two windows of N at that speed; simulator:
two commissioning windows) make the baseline and are never scored.

Methods: the envelope rule (fault when BPFO's or BPFI's first line stands ``T`` dB above its
floor or the level ``R`` dB above baseline; the kind from the stronger line, else rolling
element; T and R grid-fitted on the training domains only), logistic regression, gradient
boosting. Reported per held-out domain and seed: accuracy, balanced accuracy, per-class recall,
the healthy false-alarm rate (healthy windows called a fault) and, after the trust layer
(``--no-trust`` off), the useful-call rate and the unknown rate.

Writes OUT/transfer.json, OUT/transfer.md and OUT/transfer.png; prints the table.

    .venv/bin/python bench/bench_transfer.py --quick        # 1 seed, 30 machines: ~3 min
    .venv/bin/python bench/bench_transfer.py                # 3 seeds, 80 machines per seed
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from slewguard.signal import evidence
from slewguard.signal.cwru import _read_cwru_manifest, _window_recording, default_cwru_root
from slewguard.signal.datasets import WindowSet
from slewguard.signal.kinematics import preset
from slewguard.signal.randomise import randomised_sets
from slewguard.signal.rule import verdicts
from slewguard.signal.uestc import default_uestc_root, load_uestc_all

CLASSES = ("healthy", "inner_race", "outer_race", "rolling_element")
SPEED_UNCERTAINTY = 0.08
# model inputs: every evidence column but the fitted speed scale (it measures the label, not
# the bearing), plus the baseline deltas
INPUTS = tuple(n for n in evidence.EVIDENCE_NAMES if n != "speed_scale") + (
    "rms_rel_db", "kurtosis_rel")


def _cwru_sets() -> list[WindowSet]:
    """Every CWRU 12 kHz drive-end recording, 1 s windows (30 shaft turns); Normal's 5 s with
    a 0.5 s hop. One bearing group: the rig."""
    root = default_cwru_root()
    sets = []
    for row in _read_cwru_manifest(root):
        if row["class"] not in ("Normal", "IR", "OR", "B"):
            continue
        hop = 6000 if row["class"] == "Normal" else 12000
        ws = _window_recording(root, "all", row, False, 12000, hop)
        first = (ws.labels == "healthy") & (ws.start_s + 1.0 <= 2.0 + 1e-9)
        ws.meta = {"group": np.full(len(ws), "cwru"),
                   "commissioning": np.where(first, "1", "0")}
        sets.append(ws)
    return sets


def _uestc_sets() -> list[WindowSet]:
    """Every UESTC condition, 2 s windows; one bearing group per nominal speed."""
    ws = load_uestc_all(default_uestc_root(), window_seconds=2.0)
    first = (ws.labels == "healthy") & (ws.meta["part"] == "1") & (ws.start_s < 4.0 - 1e-9)
    ws.meta = {"group": np.array([f"uestc-{r:g}" for r in ws.rpm]),
               "commissioning": np.where(first, "1", "0")}
    return [ws]


def _sim_sets(n_machines: int, seed: int, per_class: int) -> list[WindowSet]:
    sets = randomised_sets(n_machines, windows_per_class=per_class, seed=seed)
    for ws in sets:
        ws.meta = {"group": ws.meta["machine"], "commissioning": ws.meta["commissioning"]}
    return sets


def _evidence(sets: list[WindowSet], domain: str, progress: bool) -> dict[str, np.ndarray]:
    """Evidence rows of every window, baseline deltas per group; commissioning rows dropped."""
    from rich.progress import track

    items = [(ws, i) for ws in sets for i in range(len(ws))]
    rows, raw = [], []
    for ws, i in track(items, description=f"evidence {domain}", transient=True,
                       disable=not progress):
        g = preset(str(ws.bearings()[i]))
        rows.append(evidence.extract(ws.windows[i], ws.sample_rate_hz, g, float(ws.rpm[i]),
                                     SPEED_UNCERTAINTY))
        raw.append((ws.windows[i], str(ws.meta["group"][i]), ws.meta["commissioning"][i] == "1",
                    str(ws.labels[i]), str(ws.recording[i])))
    baselines = {}
    for group in {r[1] for r in raw}:
        idx = [k for k, r in enumerate(raw) if r[1] == group and r[2]]
        if idx:
            baselines[group] = evidence.Baseline.from_windows([raw[k][0] for k in idx],
                                                              [rows[k] for k in idx])
    keep = [k for k, r in enumerate(raw) if not r[2]]
    for k in keep:
        rows[k].update(evidence.relative(raw[k][0], baselines.get(raw[k][1])))
    return {"X": np.array([[rows[k][n] for n in INPUTS] for k in keep]),
            "y": np.array([raw[k][3] for k in keep]),
            "recording": np.array([raw[k][4] for k in keep]),
            "group": np.array([raw[k][1] for k in keep]),
            "speed_scale": np.array([rows[k]["speed_scale"] for k in keep]),
            "domain": np.full(len(keep), domain)}


def _col(name: str) -> int:
    return INPUTS.index(name)


def rule_predict(X: np.ndarray, t_db: float, r_db: float) -> np.ndarray:
    """The envelope rule (``signal.rule.verdicts``) on evidence rows in INPUTS order."""
    return verdicts(X[:, _col("bpfo_h1_db")], X[:, _col("bpfi_h1_db")],
                    X[:, _col("rms_rel_db")], t_db, r_db)


def _balanced(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean([np.mean(p[y == c] == c) for c in CLASSES if np.any(y == c)]))


def fit_rule(X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    best = (-1.0, 10.0, 6.0)
    for t in np.arange(6.0, 25.01, 0.5):
        for r in np.arange(1.0, 20.01, 0.5):
            score = _balanced(y, rule_predict(X, t, r))
            if score > best[0]:
                best = (score, float(t), float(r))
    return best[1], best[2]


def _train_models(X: np.ndarray, y: np.ndarray, seed: int) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t, r = fit_rule(X, y)
    lr = make_pipeline(StandardScaler(), LogisticRegression(
        C=1.0, max_iter=3000, class_weight="balanced")).fit(X, y)
    gb = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, class_weight="balanced",
                                        random_state=seed).fit(X, y)
    return {"envelope_rule": (lambda Z: rule_predict(Z, t, r), {"T_db": t, "R_db": r}),
            "logistic": (lr.predict, {}), "gradient_boosting": (gb.predict, {})}


TRUST_QUANTILE = 0.99  # a window farther out than 99 % of held-out training windows: unknown
# What the trust layer reads: a rig-invariant summary, not every line. Shaft and BSF lines light
# up wherever a geometry puts a defect order next to a shaft harmonic (UESTC: 2 x BSF = 3.99,
# BPFI - 1 = 3.95, both next to 4 x shaft), which says more about the rig than the diagnosis.
TRUST_INPUTS = ("bpfo_h1_db", "bpfi_h1_db", "bsf2_h1_db", "rms_rel_db", "kurtosis_rel",
                "speed_confidence_db")


def fit_trust(X: np.ndarray, recording: np.ndarray, seed: int):
    """Out-of-distribution check over TRUST_INPUTS (Mahalanobis distance, Ledoit-Wolf
    covariance of the standardised inputs), threshold from training recordings held out of
    its fit (a fifth of them): a window beyond it is ``unknown``. Every input grows with the
    evidence of a fault, so values above the training range are clipped to it first: a
    stronger line or a larger level rise than any training window is more of the same, not
    a rig the model does not know."""
    from sklearn.covariance import LedoitWolf

    X = X[:, [INPUTS.index(n) for n in TRUST_INPUTS]]
    recs = np.unique(recording)
    held = np.isin(recording, np.random.default_rng(seed).choice(
        recs, max(1, len(recs) // 5), replace=False))
    mu, sd = X[~held].mean(axis=0), X[~held].std(axis=0) + 1e-9
    top = X[~held].max(axis=0)
    cov = LedoitWolf().fit((X[~held] - mu) / sd)

    def distance(Z: np.ndarray) -> np.ndarray:
        return cov.mahalanobis((np.minimum(Z, top) - mu) / sd)
    limit = float(np.quantile(distance(X[held]), TRUST_QUANTILE))
    return lambda Z: distance(Z[:, [INPUTS.index(n) for n in TRUST_INPUTS]]) > limit


def texts_of(X: np.ndarray) -> list[str]:
    """The t2 texts (``signal.textify_evidence``) of evidence rows in INPUTS order."""
    from slewguard.signal.textify_evidence import textify

    return [textify(dict(zip(INPUTS, map(float, x), strict=True)) | {"has_baseline": 1.0})
            for x in X]


def lm_predictions(train: dict, tests: dict[str, np.ndarray], seed: int,
                   quick: bool) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """A language model on the t2 texts, built as the shipped model is (``BuildConfig``:
    vocabulary trimmed, fine-tuned, pruned by the cascade, fine-tuned again), validated on a
    fifth of the training recordings: its dense and its pruned predictions on each of ``tests``,
    and the facts (family, body parameters, ratio, seconds)."""
    import tempfile

    import torch

    from slewguard.models import backbones
    from slewguard.models.build_data import BuildData, Texts
    from slewguard.models.classifier import train_classifier
    from slewguard.models.default import BuildConfig, prune
    from slewguard.models.prune import measure
    from slewguard.models.prune.vocab import trim_vocabulary
    from slewguard.signal.textify_evidence import TEMPLATE_VERSION, vocabulary

    started = time.perf_counter()
    config = BuildConfig.for_mode(quick, seed=seed, show_progress=False)
    torch.set_num_threads(config.threads)
    recs = np.unique(train["recording"])
    held = np.isin(train["recording"], np.random.default_rng(seed).choice(
        recs, max(1, len(recs) // 5), replace=False))
    texts = np.array(texts_of(train["X"]))

    def part(mask: np.ndarray, name: str) -> Texts:
        return Texts(name, texts[mask].tolist(), train["y"][mask].tolist(),
                     np.zeros((int(mask.sum()), 0), np.float32))
    data = BuildData(train=part(~held, "train"), calib=part(held, "calib"), tests=[])
    with tempfile.TemporaryDirectory(prefix="slewguard-t2-") as workdir:
        torch.manual_seed(seed)
        backbone = backbones.build(config.family, len(CLASSES))
        model, tokenizer = trim_vocabulary(backbone.model, backbone.tokenizer,
                                           [*data.train.texts, " ".join(vocabulary())])
        model.save_pretrained(workdir)
        tokenizer.save_pretrained(workdir)
        clf, _ = train_classifier(
            data.train.texts, data.train.labels, data.calib.texts, data.calib.labels,
            classes=CLASSES, family=config.family, source=workdir, epochs=config.epochs,
            lr=config.lr, batch_size=config.batch_size, seed=seed, max_length=64,
            show_progress=False, template_version=TEMPLATE_VERSION)
    dense_body = measure.body_parameters(clf.model)
    out = {"lm_dense": {k: np.asarray(clf.predict(texts_of(Z)), str) for k, Z in tests.items()}}
    pruned, _ = prune(clf, config, data)  # changes clf in place: dense predictions first
    out["lm_pruned"] = {k: np.asarray(pruned.predict(texts_of(Z)), str)
                        for k, Z in tests.items()}
    facts = {"family": config.family, "dense_body": dense_body,
             "pruned_body": measure.body_parameters(pruned.model),
             "ratio": round(dense_body / measure.body_parameters(pruned.model), 2),
             "seconds": round(time.perf_counter() - started, 1)}
    return out, facts


def _scores(y: np.ndarray, p: np.ndarray, unknown: np.ndarray) -> dict:
    healthy = y == "healthy"
    return {"n": int(len(y)), "n_healthy": int(healthy.sum()),
            "unknown_rate": float(np.mean(unknown)),
            "useful_call_rate": float(np.mean((p == y) & ~unknown)),
            "accuracy": float(np.mean(p == y)), "balanced_accuracy": _balanced(y, p),
            "recall": {c: float(np.mean(p[y == c] == c)) for c in CLASSES if np.any(y == c)},
            "healthy_false_alarm": float(np.mean(p[healthy] != "healthy")) if healthy.any()
            else None}


def _stack(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def run(args: argparse.Namespace) -> dict:
    real = {"cwru": _evidence(_cwru_sets(), "cwru", args.progress),
            "uestc": _evidence(_uestc_sets(), "uestc", args.progress)}
    out = {"settings": vars(args) | {"out": str(args.out)}, "inputs": list(INPUTS), "runs": []}
    for seed in range(args.seeds):
        sim_train = _evidence(_sim_sets(args.machines, 100 + seed, args.per_class), "sim",
                              args.progress)
        sim_test = _evidence(_sim_sets(args.machines // 2, 200 + seed, args.per_class), "sim",
                             args.progress)
        cases = [("sim", ["cwru", "uestc"]), ("cwru", ["sim", "uestc"]),
                 ("uestc", ["sim", "cwru"]), ("cwru", ["sim"]), ("uestc", ["sim"])]
        domains = {"sim": sim_test, **real}
        lm = {}
        for combo in dict.fromkeys("+".join(t) for _, t in cases) if args.lm else ():
            if args.lm == "sim" and combo != "sim":
                continue
            held_for = {h: domains[h]["X"] for h, t in cases if "+".join(t) == combo}
            train = _stack([sim_train if d == "sim" else real[d] for d in combo.split("+")])
            lm[combo], facts = lm_predictions(train, held_for, seed, args.lm_quick)
            out.setdefault("lm", []).append({"seed": seed, "train": combo, **facts})
            print(f"seed {seed} language model on {combo}: {facts}", flush=True)
        for held, train_on in cases:
            train = _stack([sim_train if d == "sim" else real[d] for d in train_on])
            test = sim_test if held == "sim" else real[held]
            assert not set(train["recording"]) & set(test["recording"])
            unknown = fit_trust(train["X"], train["recording"], seed)(test["X"])
            methods = _train_models(train["X"], train["y"], seed)
            for name, by_domain in lm.get("+".join(train_on), {}).items():
                methods[name] = (lambda _Z, b=by_domain, h=held: b[h], {})
            for name, (predict, params) in methods.items():
                p = np.asarray(predict(test["X"]), dtype=str)
                r = {"seed": seed, "held_out": held, "train": "+".join(train_on),
                     "method": name, "params": params, **_scores(test["y"], p, unknown)}
                out["runs"].append(r)
                print(f"seed {seed} {held:>5} <- {r['train']:<10} {name:<18} "
                      f"acc {r['accuracy']:.3f} FA {r['healthy_false_alarm']} "
                      f"useful {r['useful_call_rate']:.3f}", flush=True)
    return out


def _table(out: dict) -> str:
    keys = sorted({(r["held_out"], r["train"], r["method"]) for r in out["runs"]},
                  key=lambda k: (k[0], k[1], k[2]))
    lines = ["| held out | trained on | method | accuracy | balanced | healthy FA | "
             "IR / OR / RE recall | useful calls | unknown | windows (healthy) |",
             "|" + "---|" * 10]
    for held, train, method in keys:
        rs = [r for r in out["runs"] if (r["held_out"], r["train"], r["method"]) ==
              (held, train, method)]

        def med(f, rs=rs):
            vals = [f(r) for r in rs if f(r) is not None]
            return f"{np.median(vals):.3f}" if vals else "-"
        rec = " / ".join(med(lambda r, c=c: r["recall"].get(c)) for c in CLASSES[1:])
        lines.append(f"| {held} | {train} | {method} | {med(lambda r: r['accuracy'])} | "
                     f"{med(lambda r: r['balanced_accuracy'])} | "
                     f"{med(lambda r: r['healthy_false_alarm'])} | {rec} | "
                     f"{med(lambda r: r['useful_call_rate'])} | "
                     f"{med(lambda r: r['unknown_rate'])} | "
                     f"{rs[0]['n']} ({rs[0]['n_healthy']}) |")
    return "\n".join(lines)


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = sorted({(r["held_out"], r["train"]) for r in out["runs"]})
    methods = sorted({r["method"] for r in out["runs"]})
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    for ax, key, title in ((axes[0], "accuracy", "accuracy on the held-out rig"),
                           (axes[1], "healthy_false_alarm", "healthy windows called faulty"),
                           (axes[2], "useful_call_rate", "useful calls (right and not unknown)")):
        for j, m in enumerate(methods):
            vals = [np.median([r[key] for r in out["runs"] if (r["held_out"], r["train"]) == c
                               and r["method"] == m and r[key] is not None] or [np.nan])
                    for c in cases]
            bars = ax.bar(np.arange(len(cases)) + 0.8 * j / len(methods), vals,
                          0.8 / len(methods), label=m.replace("_", " "))
            ax.bar_label(bars, fmt="%.2f", fontsize=6, rotation=90, padding=2)
        ax.set_xticks(np.arange(len(cases)) + 0.4 - 0.4 / len(methods))
        ax.set_xticklabels([f"test {h}\ntrain {t}" for h, t in cases], fontsize=8)
        ax.set_title(title)
        ax.set_ylim(0, 1.12)
    axes[0].axhline(0.95, color="k", ls="--", lw=0.8, label="goal 95 %")
    axes[1].axhline(0.02, color="k", ls="--", lw=0.8, label="goal 2 %")
    axes[2].axhline(0.90, color="k", ls="--", lw=0.8, label="goal 90 %")
    axes[0].legend(fontsize=8, loc="lower left")
    axes[1].legend(fontsize=8)
    fig.suptitle("Leave one rig out (median of seeds; bench/bench_transfer.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--machines", type=int, default=80, help="simulated machines per seed")
    ap.add_argument("--per-class", type=int, default=3, help="windows per class and machine")
    ap.add_argument("--quick", action="store_true", help="1 seed, 30 machines")
    ap.add_argument("--lm", choices=("sim", "all"), default=None,
                    help="also the language model, dense and pruned (t2 texts): trained on the "
                         "simulator alone (sim) or for every case (all); MiniLM, ~20 min each")
    ap.add_argument("--lm-quick", action="store_true",
                    help="the language model as a tiny random BERT (seconds; a smoke test)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/transfer"))
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.machines = 1, 30
    t0 = time.perf_counter()
    out = run(args)
    out["seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transfer.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    table = _table(out)
    (args.out / "transfer.md").write_text(table + "\n")
    _plot(out, args.out / "transfer.png")
    print(table)
    print(f"wrote {args.out}/transfer.{{json,md,png}} in {out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
