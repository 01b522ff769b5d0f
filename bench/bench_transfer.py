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
element; T and R grid-fitted on the training domains only), logistic regression and gradient
boosting on every evidence input, logistic regression on the three inputs of the t3 text
(``logistic_t3``) and, with ``--lm``, the language model on the t3 texts, dense and pruned by
the cascade to 8.7x and 13.8x, built as the shipped models are. Reported per held-out domain
and seed: accuracy, balanced accuracy, per-class recall, the healthy false-alarm rate (healthy
windows called a fault) and, after the trust layer (the shipped t3 models' out-of-distribution
check, fitted on the training domains), the useful-call rate and the unknown rate.

Writes OUT/transfer.json, OUT/transfer.md and OUT/transfer.png; prints the table.

    .venv/bin/python bench/bench_transfer.py --quick        # 1 seed, 30 machines: ~3 min
    .venv/bin/python bench/bench_transfer.py                # 3 seeds, 80 machines per seed
    .venv/bin/python bench/bench_transfer.py --lm all       # ... and the language model
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from slewguard.models.build_evidence import (
    CLASSES,
    INPUTS,
    TRUST_INPUTS,
    EvidenceTable,
    cwru_sets,
    evidence_table,
    held_recordings,
    sim_sets,
    texts_of,
    to_texts,
    uestc_sets,
)
from slewguard.signal.rule import verdicts
from slewguard.signal.textify_evidence import INPUT_NAMES as T3_INPUTS

PRUNE_RATIOS = (8.7, 13.8)  # the paper's two compressions of its LLM


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
    cols = [_col(n) for n in T3_INPUTS]
    lr3 = make_pipeline(StandardScaler(), LogisticRegression(
        C=1.0, max_iter=3000, class_weight="balanced")).fit(X[:, cols], y)
    return {"envelope_rule": (lambda Z: rule_predict(Z, t, r), {"T_db": t, "R_db": r}),
            "logistic": (lr.predict, {}), "gradient_boosting": (gb.predict, {}),
            "logistic_t3": (lambda Z: lr3.predict(Z[:, cols]), {})}


def fit_trust(X: np.ndarray, recording: np.ndarray, seed: int):
    """The daemon's out-of-distribution check for t3 models (``models.ood.OodDetector`` over
    ``build_evidence.TRUST_INPUTS``: per-input ranges, one-sided on fault evidence), fitted on
    four fifths of the training recordings, its threshold from the other fifth, as the
    shipped build does: a window beyond it is ``unknown``."""
    from slewguard.models.ood import OodDetector
    from slewguard.signal.features import FeatureTable

    X = X[:, [INPUTS.index(n) for n in TRUST_INPUTS]]
    recs = np.unique(recording)
    held = np.isin(recording, np.random.default_rng(seed).choice(
        recs, max(1, len(recs) // 5), replace=False))
    detector = OodDetector().fit(FeatureTable(TRUST_INPUTS, X[~held])).calibrate(
        FeatureTable(TRUST_INPUTS, X[held]))
    return lambda Z: detector.is_ood(FeatureTable(
        TRUST_INPUTS, Z[:, [INPUTS.index(n) for n in TRUST_INPUTS]]))


def lm_predictions(train: EvidenceTable, tests: dict[str, np.ndarray], seed: int,
                   quick: bool) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """A language model on the t3 texts, built as the shipped models are (``models.default``
    with ``template="t3"``: vocabulary trimmed, fine-tuned, pruned by the cascade, fine-tuned
    again), validated on a fifth of the training recordings: its dense predictions and those
    pruned to each of PRUNE_RATIOS on each of ``tests``, and the facts (family, body
    parameters, ratios, seconds)."""
    import copy
    import tempfile
    from pathlib import Path

    import torch

    from slewguard.models.build_config import BuildConfig
    from slewguard.models.build_data import BuildData
    from slewguard.models.default import prune, train_dense, trimmed_backbone
    from slewguard.models.prune import measure

    started = time.perf_counter()
    config = BuildConfig.for_mode(quick, seed=seed, show_progress=False, template="t3")
    torch.set_num_threads(config.threads)
    held = held_recordings(train, config.calib_fraction, seed + 1)
    data = BuildData(train=to_texts(train.take(~held), "train"),
                     calib=to_texts(train.take(held), "calib"), tests=[])
    with tempfile.TemporaryDirectory(prefix="slewguard-t3-") as workdir:
        source, _ = trimmed_backbone(config, data, Path(workdir))
        dense, _ = train_dense(config, data, source)
    dense_body = measure.body_parameters(dense.model)
    out = {"lm_dense": {k: np.asarray(dense.predict(texts_of(Z)), str)
                        for k, Z in tests.items()}}
    facts = {"family": config.family, "dense_body": dense_body, "ratios": {}}
    for ratio in ((2.0,) if quick else PRUNE_RATIOS):
        clf = copy.deepcopy(dense)  # prune changes its classifier in place
        pruned, _ = prune(clf, config.model_copy(update={"target_ratio": ratio}), data)
        name = f"lm_pruned_{ratio:g}x"
        out[name] = {k: np.asarray(pruned.predict(texts_of(Z)), str) for k, Z in tests.items()}
        facts["ratios"][name] = round(dense_body / measure.body_parameters(pruned.model), 2)
    facts["seconds"] = round(time.perf_counter() - started, 1)
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


def run(args: argparse.Namespace) -> dict:
    real = {"cwru": evidence_table(cwru_sets(), "cwru", args.progress),
            "uestc": evidence_table(uestc_sets(), "uestc", args.progress)}
    hp3 = np.char.endswith(real["cwru"].recording.astype(str), "_3")
    real["cwru-3hp"], real["cwru-0-2hp"] = real["cwru"].take(hp3), real["cwru"].take(~hp3)
    out = {"settings": vars(args) | {"out": str(args.out)}, "inputs": list(INPUTS), "runs": []}
    for seed in range(args.seeds):
        sim_train = sim_test = None  # the in-domain case needs no simulator
        if not args.in_domain:
            sim_train = evidence_table(sim_sets(args.machines, 100 + seed, args.per_class),
                                       "sim", args.progress)
            sim_test = evidence_table(sim_sets(args.machines // 2, 200 + seed, args.per_class),
                                      "sim", args.progress)
        cases = [("sim", ["cwru", "uestc"]), ("cwru", ["sim", "uestc"]),
                 ("uestc", ["sim", "cwru"]), ("cwru", ["sim"]), ("uestc", ["sim"])]
        if args.in_domain:  # CWRU's load transfer: the rig the models are built on
            cases = [("cwru-3hp", ["cwru-0-2hp"])]
        domains = {"sim": sim_test, **real}
        lm = {}
        for combo in dict.fromkeys("+".join(t) for _, t in cases) if args.lm else ():
            if args.lm == "sim" and combo != "sim":
                continue
            held_for = {h: domains[h].X for h, t in cases if "+".join(t) == combo}
            train = EvidenceTable.stack([sim_train if d == "sim" else real[d]
                                         for d in combo.split("+")])
            lm[combo], facts = lm_predictions(train, held_for, seed, args.lm_quick)
            out.setdefault("lm", []).append({"seed": seed, "train": combo, **facts})
            print(f"seed {seed} language model on {combo}: {facts}", flush=True)
        for held, train_on in cases:
            train = EvidenceTable.stack([sim_train if d == "sim" else real[d] for d in train_on])
            test = sim_test if held == "sim" else real[held]
            assert not set(train.recording) & set(test.recording)
            unknown = fit_trust(train.X, train.recording, seed)(test.X)
            methods = _train_models(train.X, train.y, seed)
            for name, by_domain in lm.get("+".join(train_on), {}).items():
                methods[name] = (lambda _Z, b=by_domain, h=held: b[h], {})
            for name, (predict, params) in methods.items():
                p = np.asarray(predict(test.X), dtype=str)
                r = {"seed": seed, "held_out": held, "train": "+".join(train_on),
                     "method": name, "params": params, **_scores(test.y, p, unknown)}
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
                    help="also the language model, dense and pruned to 8.7x and 13.8x (t3 "
                         "texts): trained on the simulator alone (sim) or for every case (all); "
                         "MiniLM, ~4 min per training set")
    ap.add_argument("--lm-quick", action="store_true",
                    help="the language model as a tiny random BERT (seconds; a smoke test)")
    ap.add_argument("--in-domain", action="store_true",
                    help="only CWRU's load transfer instead (train on its 0-2 HP recordings, "
                         "test on 3 HP): what rig invariance costs on the rig itself")
    ap.add_argument("--out", type=Path, default=None,
                    help="default bench/results/transfer (--in-domain: .../transfer_in_domain)")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the builds' load reports would bury the table
    hf_logging.disable_progress_bar()
    if args.quick:
        args.seeds, args.machines = 1, 30
    if args.out is None:
        args.out = Path("bench/results/transfer" + ("_in_domain" if args.in_domain else ""))
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
