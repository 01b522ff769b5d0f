"""The SIA experiment: per-component L1 pruning at ~2x on MiniLM (MHA+GELU) vs SmolLM2 (GQA+SwiGLU).

For each backbone, fine-tuned on CWRU faults-3class:
1. the static and the measured SIA verdicts (sia.static_check / sia.measured_check);
2. per-component L1 pruning that assumes the SIA (each head with "its" K/V, gate and up rows as
   independent components), applied by zeroing weights at ~2x, accuracy before and after LoRA
   recovery: on GQA+SwiGLU a head takes its whole KV group along and half-removed gate/up pairs
   kill channels, which is the paper's collapse (ChatGLM-2: 88.75 -> 19.75 -> 87.25);
3. coupling-aware structural L1 pruning at the same ratio (KV groups with their query heads,
   gate/up/down triples), before and after recovery; on SmolLM2 also the non-coupled surgery
   (equal query heads per group);
4. the coupling-aware cascade at the same ratio (layers, then KV groups, then gate/up/down
   triples, Taylor criterion, LoRA between stages) with the same total recovery epochs as 2 and 3
   (stage epochs 10/10/30 scaled to sum to --recovery-epochs).

Each dense model is fine-tuned once and kept in OUT/dense_FAMILY_e<epochs>_n<texts>_s<seed>
(delete it to retrain), so a rerun with other --variants reuses it. Writes OUT/sia.json (one
entry per family, variants of earlier runs kept), OUT/sia.md and OUT/sia.png.

    .venv/bin/python bench/bench_sia.py --quick     # 1 dense epoch, 1 recovery epoch
    .venv/bin/python bench/bench_sia.py             # 3 dense epochs, 10 recovery epochs
    .venv/bin/python bench/bench_sia.py --families smollm2 --variants cascade --no-measured
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

from slewguard.models.classifier import (
    FaultClassifier,
    TrainSettings,
    load,
    make_batches,
    train_classifier,
)
from slewguard.models.prune import measure
from slewguard.models.prune.baselines import run_baseline
from slewguard.models.prune.cascade import CascadeConfig, run_cascade
from slewguard.models.prune.recovery import recover
from slewguard.models.prune.sia import measured_check, static_check
from slewguard.models.prune.surgery import surgeon_for
from slewguard.models.scoring import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prune import load_texts  # noqa: E402  (same cached CWRU texts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--families", nargs="+", default=["minilm", "smollm2"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                   help="pruning variants to run (per_head only runs on GQA models)")
    p.add_argument("--no-measured", dest="measured", action="store_false",
                   help="skip the measured SIA check (slow on SmolLM2: ~10 min here)")
    p.add_argument("--fraction", type=float, default=0.5,
                   help="share of heads and of FFN components the naive pruner removes")
    p.add_argument("--dense-epochs", type=int)
    p.add_argument("--recovery-epochs", type=int)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--train-limit", type=int, help="use only this many training texts "
                   "(a seeded random subset; --quick: 120) to fit a slow CPU")
    p.add_argument("--out", type=Path, default=Path("out/bench_sia"))
    p.add_argument("--threads", type=int, help="torch CPU threads (--quick: 1, which avoids "
                   "spin-waiting when the CPU is shared; default: torch's choice)")
    args = p.parse_args(argv)
    args.dense_epochs = args.dense_epochs or (1 if args.quick else 3)
    args.recovery_epochs = args.recovery_epochs or (1 if args.quick else 10)
    args.train_limit = args.train_limit or (120 if args.quick else None)
    return args


VARIANTS = ("naive", "coupling_aware", "per_head", "cascade")


@torch.no_grad()
def naive_l1_zero(model: torch.nn.Module, fraction: float) -> float:
    """Zero the lowest-L1 ``fraction`` of heads (MHA-style: q, k, v rows + o columns, so under GQA
    the head's whole KV group) and of FFN components (gate rows and up rows scored and removed
    independently; GELU: up row + down column) in every layer. Returns the body ratio
    dense / (dense - zeroed)."""
    surgeon = surgeon_for(model)
    body = measure.body_parameters(model)
    zeroed = 0
    for layer in range(surgeon.num_layers(model)):
        p = surgeon.projections(model, layer)
        hd = surgeon.head_dim(model, layer)
        heads, kv = surgeon.attention_units(model, layer), surgeon.kv_groups(model, layer)
        group = heads // kv
        score = (p["q"].abs().view(heads, hd, -1).sum((1, 2))
                 + p["o"].abs().view(p["o"].shape[0], heads, hd).sum((0, 2)))
        for h in score.argsort()[: round(fraction * heads)].tolist():
            g = h // group
            for name, rows in (("q", h), ("k", g), ("v", g)):
                zeroed += int(p[name][rows * hd:(rows + 1) * hd].count_nonzero())
                p[name][rows * hd:(rows + 1) * hd] = 0
            zeroed += int(p["o"][:, h * hd:(h + 1) * hd].count_nonzero())
            p["o"][:, h * hd:(h + 1) * hd] = 0
        zeroed += _zero_ffn(p, fraction)
    return body / (body - zeroed)


def _zero_ffn(p: dict, fraction: float) -> int:
    if p["ffn_gate"] is None:  # GELU: a channel is its up row and its down column
        score = p["ffn_in"].abs().sum(1) + p["ffn_out"].abs().sum(0)
        cut = score.argsort()[: round(fraction * len(score))]
        zeroed = int(p["ffn_in"][cut].count_nonzero() + p["ffn_out"][:, cut].count_nonzero())
        p["ffn_in"][cut] = 0
        p["ffn_out"][:, cut] = 0
        return zeroed
    rows = torch.cat([p["ffn_gate"].abs().sum(1), p["ffn_in"].abs().sum(1)])
    cut = rows.argsort()[: round(fraction * len(rows))]
    n = p["ffn_in"].shape[0]
    gate, up = cut[cut < n], cut[cut >= n] - n
    zeroed = int(p["ffn_gate"][gate].count_nonzero() + p["ffn_in"][up].count_nonzero())
    p["ffn_gate"][gate] = 0
    p["ffn_in"][up] = 0
    return zeroed


def _copy(clf: FaultClassifier) -> FaultClassifier:
    return _with(clf, copy.deepcopy(clf.model))


def dense_model(family: str, data, args) -> tuple[FaultClassifier, float]:
    """The fine-tuned dense classifier of ``family``: from its OUT/dense_... cache, else trained and
    saved there. Returns it and the seconds its training took (0 when loaded)."""
    path = args.out / (f"dense_{family}_e{args.dense_epochs}_n{len(data['train'][0])}"
                       f"_s{args.seed}")
    if (path / "card.json").is_file():
        return load(path), 0.0
    torch.manual_seed(args.seed)
    settings = TrainSettings(family=family, epochs=args.dense_epochs, seed=args.seed,
                             lr=1e-4 if family == "minilm" else 5e-5, batch_size=16)
    start = time.perf_counter()
    dense, _ = train_classifier(*data["train"], *data["test"], settings)
    seconds = time.perf_counter() - start
    dense.save(path)
    return dense, seconds


def study(family: str, data, args) -> dict:
    """The requested checks and variants of ``family``, as its sia.json entry."""
    dense, seconds = dense_model(family, data, args)
    out = {"family": family, "dense_accuracy": evaluate(dense, *data["test"])["accuracy"]}
    if seconds:  # 0: loaded from the cache, the training time is in an earlier run's entry
        out["dense_seconds"] = seconds
    batches = make_batches(dense, *data["train"], batch_size=16, seed=args.seed)
    static = static_check(dense.model.config)
    out["static"] = {"satisfied": static.satisfied, "evidence": list(static.evidence)}
    if args.measured:
        measured = measured_check(dense.model, batches[:2], pairs_per_type=6)
        out["measured"] = {"satisfied": measured.satisfied, "evidence": measured.evidence,
                           "pair_stats": measured.pair_stats, "ranking": measured.ranking}
    out["naive_ratio"] = naive_l1_zero(_copy(dense).model, args.fraction)
    gqa = surgeon_for(dense.model).gqa
    for name in args.variants:
        if name == "per_head" and not gqa:
            continue
        clf, start = _copy(dense), time.perf_counter()
        if name == "naive":
            naive_l1_zero(clf.model, args.fraction)
            out[name] = _before_after(clf, batches, data, args)
        elif name == "cascade":
            out[name], out[f"{name}_ratio"] = _cascade(clf, batches, data, args,
                                                       out["naive_ratio"])
        else:
            config = CascadeConfig(target_ratio=out["naive_ratio"], seed=args.seed,
                                   coupling_aware=name == "coupling_aware", show_progress=False)
            clf.model, report = run_baseline("magnitude", clf.model, batches, batches, config)
            out[f"{name}_ratio"] = report.final_ratio
            out[name] = _before_after(clf, batches, data, args)
        out[name]["seconds"] = time.perf_counter() - start
        print(f"[{family}] {name}: {out[name]}", flush=True)
    return out


def _cascade(clf: FaultClassifier, batches, data, args, ratio: float) -> tuple[dict, float]:
    """The coupling-aware cascade (Taylor) with ``args.recovery_epochs`` epochs over its stages:
    its results ("before recovery" is the accuracy right after its last removal) and ratio.
    One round (the paper's three stages), as the SIA table in docs/bench-pruning.md was measured."""
    config = CascadeConfig(target_ratio=ratio, coupling_aware=True, seed=args.seed,
                           epoch_scale=args.recovery_epochs / _stage_epochs(), rounds=1,
                           show_progress=False)
    def accuracy(model: torch.nn.Module) -> dict[str, float]:
        return {"accuracy": evaluate(_with(clf, model), *data["test"])["accuracy"]}

    clf.model, report = run_cascade(clf.model, clf.tokenizer, batches, batches, config,
                                    evaluate=accuracy)
    last = report.stages[-1]
    return {"before_recovery": last.metrics_before_recovery.get("accuracy", float("nan")),
            "after_recovery": evaluate(clf, *data["test"])["accuracy"],
            "stages": [f"{st.stage}: {st.granularity} {st.ratio:.2f}x "
                       f"{st.metrics.get('accuracy', float('nan')):.3f}" for st in report.stages]
            }, report.final_ratio


def _stage_epochs() -> int:
    """The cascade's default layer + head + channel recovery epochs (the paper's 10/10/30)."""
    fields = CascadeConfig.model_fields
    return sum(fields[f"{stage}_epochs"].default for stage in ("layer", "head", "channel"))


def _with(clf: FaultClassifier, model: torch.nn.Module) -> FaultClassifier:
    return FaultClassifier(model, clf.tokenizer, clf.classes, clf.template_version,
                           max_length=clf.max_length)


def _before_after(clf: FaultClassifier, batches, data, args) -> dict[str, float]:
    before = evaluate(clf, *data["test"])["accuracy"]
    clf.model = recover(clf.model, batches, args.recovery_epochs, seed=args.seed)
    return {"before_recovery": before, "after_recovery": evaluate(clf, *data["test"])["accuracy"]}


def _merge(path: Path, entry: dict) -> list[dict]:
    """Fold ``entry`` into the family's entry of ``path`` (read now, so runs with other
    --variants in parallel on the same OUT keep each other's results); returns all entries."""
    results = json.loads(path.read_text()) if path.is_file() else []
    old = next((r for r in results if r["family"] == entry["family"]), None)
    if old is None:
        results.append(entry)
    else:
        old.update(entry)
    path.write_text(json.dumps(results, indent=1))
    return results


def markdown(results: list[dict], args) -> str:
    lines = [f"# bench_sia ({'quick' if args.quick else 'full'}): CWRU faults-3class, L1 at "
             f"~2x, dense epochs {args.dense_epochs}, recovery epochs {args.recovery_epochs}", "",
             "| model | dense | pruning | ratio | before recovery | after recovery |",
             "|---|---|---|---|---|---|"]
    for r in results:
        for name in VARIANTS:
            if name in r:
                lines.append(f"| {r['family']} | {100 * r['dense_accuracy']:.2f} | {name} | "
                             f"{r.get(f'{name}_ratio', 0):.2f}x | "
                             f"{100 * r[name]['before_recovery']:.2f} | "
                             f"{100 * r[name]['after_recovery']:.2f} |")
    for r in results:
        measured = r.get("measured", {"satisfied": None, "evidence": []})
        verdict = {True: "satisfied", False: "VIOLATED", None: "not run"}[measured["satisfied"]]
        lines += ["", f"## {r['family']}: static SIA "
                  f"{'satisfied' if r['static']['satisfied'] else 'VIOLATED'}, measured {verdict}"]
        lines += [f"- {e}" for e in r["static"]["evidence"] + measured["evidence"]]
        if "cascade" in r:
            stages = '; '.join(r['cascade']['stages'])
            lines.append(f"- cascade stages (unit, ratio, accuracy): {stages}")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels, before, after = [], [], []
    for r in results:
        for name in VARIANTS:
            if name in r:
                labels.append(f"{r['family']}\n{name}")
                before.append(100 * r[name]["before_recovery"])
                after.append(100 * r[name]["after_recovery"])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], before, 0.4, label="before recovery")
    ax.bar([i + 0.2 for i in x], after, 0.4, label="after LoRA recovery")
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("L1 pruning at ~2x: SIA-assuming (naive) vs coupling-aware")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads or args.quick:
        torch.set_num_threads(args.threads or 1)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    data = load_texts("faults-3class", args.out)
    if args.train_limit:
        texts, labels = data["train"]
        keep = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))
        keep = sorted(keep[: args.train_limit].tolist())
        data["train"] = ([texts[i] for i in keep], [labels[i] for i in keep])
    path = args.out / "sia.json"
    for family in args.families:
        results = _merge(path, study(family, data, args))
    (args.out / "sia.md").write_text(markdown(results, args))
    plot(results, args.out / "sia.png")
    print(markdown(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
