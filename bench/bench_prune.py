"""Accuracy vs compression on real CWRU with pretrained MiniLM: cascade against the baselines.

Reproduces the shape of the paper's table (section 1 of PAPER.md): dense, the cascade and every
baseline (magnitude, wanda, taylor-lora, shortgpt) at ~1.3, 2.5, 3.7, 5.8, 8.7 and 13.8x body
compression, seeds 42/123/456, on both CWRU protocols (faults-3class: load transfer 0-2 HP ->
3 HP; paper-4class: plus Normal, time-split: see /work/shared/data/cwru/README.md). For every
model it also measures latency (batch 1 and 32, median of several runs) and peak inference memory
(a fresh process loads the saved model and runs one batch) against dense, in the same run: the
peak over the process with torch imported (model_rss) and the model's own part of it, without
the pages of torch's kernels that any first forward pass faults in (model_mem).

Writes OUT/results.json (every run), OUT/results.md (tables) and OUT/accuracy_vs_compression.png.

    .venv/bin/python bench/bench_prune.py --quick          # 1 seed, 2 ratios, few epochs: ~10 min
    .venv/bin/python bench/bench_prune.py                  # full: 2 protocols x 3 seeds x 5 methods
                                                           # x 6 ratios, paper epochs: ~3 h here

Parts may run in parallel processes (e.g. one per protocol, each with its own --out) and be
joined afterwards: ``--merge A/results.json B/results.json --out OUT`` writes OUT's tables and
plot from them without training anything (pass the same --protocols/--ratios/--methods/--seeds).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from slewguard.models.classifier import (
    FaultClassifier,
    TrainSettings,
    make_batches,
    train_classifier,
)
from slewguard.models.prune import measure
from slewguard.models.prune.baselines import METHODS, run_baseline
from slewguard.models.prune.cascade import CascadeConfig, run_cascade
from slewguard.models.scoring import evaluate
from slewguard.signal import cwru, datasets, textify

PAPER_RATIOS = (1.3, 2.5, 3.7, 5.8, 8.7, 13.8)
# a recovering method with "-kd" also distils from the dense model during recovery
# "-vocab": the cascade's vocabulary stage too (embedding rows textify never uses; no change of
# the body ratio, a smaller model in memory and on disk)
ROUNDS = CascadeConfig.model_fields["rounds"].default
VARIANTS = ("cascade-kd", "taylor-lora-kd", "cascade-vocab")
PROTOCOLS = ("faults-3class", "paper-4class")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 2 ratios, few epochs")
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    p.add_argument("--ratios", type=float, nargs="+", help=f"default {PAPER_RATIOS}")
    p.add_argument("--seeds", type=int, nargs="+", help="default 42 123 456")
    p.add_argument("--methods", nargs="+", default=list(METHODS),
                   choices=(*METHODS, *VARIANTS))
    p.add_argument("--distill-weight", type=float, default=0.5, help="-kd methods: weight of "
                   "the dense model's soft logits in the recovery loss")
    p.add_argument("--distill-temperature", type=float, default=2.0)
    p.add_argument("--distill-teacher", default="dense", choices=("dense", "previous"),
                   help="cascade-kd: distil from the dense model or from the model before "
                   "each stage")
    p.add_argument("--rounds", type=int, default=ROUNDS, help="cascade: head + channel rounds "
                   f"(default {ROUNDS}; 1: the paper's three stages)")
    p.add_argument("--calibration-samples", type=int, default=128,
                   help="examples each importance estimate sees")
    p.add_argument("--lora-target", default="attention", choices=("attention", "attention+ffn"),
                   help="what LoRA recovery adapts (every recovering method)")
    p.add_argument("--family", default="minilm", help="backbone (backbones.SUPPORTED_FAMILIES)")
    p.add_argument("--dense-epochs", type=int, help="dense fine-tuning epochs (default 10)")
    p.add_argument("--dense-lr", type=float, default=1e-4)
    p.add_argument("--epoch-scale", type=float, help="recovery epochs x this (default 1.0)")
    p.add_argument("--shares", type=float, nargs=3, help="cascade layer/head/channel shares")
    p.add_argument("--stage-epochs", type=int, nargs=3, metavar=("LAYERS", "HEADS", "CHANNELS"),
                   help="cascade LoRA epochs after each stage (default 10 10 30, the paper's); "
                   "the one-shot baselines recover for their sum")
    p.add_argument("--criterion", default="taylor", help="cascade head + channel criterion")
    p.add_argument("--layer-criterion", default="lcr", choices=("lcr", "block_influence"),
                   help="cascade layer criterion (lcr: the paper's; block_influence: ShortGPT's)")
    p.add_argument("--validate-load", type=float, help="validation instead of the test: "
                   "train on the training side's other loads, test on this one (HP), e.g. 2")
    p.add_argument("--latency-runs", type=int, default=7)
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory subprocesses")
    p.add_argument("--out", type=Path, default=Path("out/bench_prune"))
    p.add_argument("--merge", type=Path, nargs="+", help="results.json files of earlier runs: "
                   "join them into OUT instead of running")
    p.add_argument("--threads", type=int, help="torch CPU threads (--quick: 1, which avoids "
                   "spin-waiting when the CPU is shared; default: torch's choice)")
    args = p.parse_args(argv)
    quick = args.quick
    args.ratios = args.ratios or ([2.5, 8.7] if quick else list(PAPER_RATIOS))
    args.seeds = args.seeds or ([42] if quick else [42, 123, 456])
    args.dense_epochs = args.dense_epochs or (4 if quick else 10)
    args.epoch_scale = args.epoch_scale or (0.1 if quick else 1.0)
    return args


def load_texts(protocol: str, out: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Feature texts + labels per side, cached in OUT (feature extraction is the slow part)."""
    cache = out / f"texts_{protocol}.json"
    if cache.is_file():
        return {k: tuple(v) for k, v in json.loads(cache.read_text()).items()}
    split = cwru.load_cwru(protocol=protocol)
    data = {side: (datasets.to_texts(getattr(split, side)), getattr(split, side).labels.tolist())
            for side in ("train", "test")}
    data["train_load_hp"] = split.train.load_hp.tolist()
    cache.write_text(json.dumps(data))
    return data


def hold_out_load(data: dict, load_hp: float) -> dict[str, tuple[list[str], list[str]]]:
    """Validation protocol: train on the training side's other loads, test on ``load_hp``.

    Picks settings without looking at the 3 HP test side (leave-one-load-out)."""
    texts, labels = data["train"]
    loads = data.get("train_load_hp")
    if loads is None:
        raise ValueError("the text cache predates load tags: delete texts_*.json in --out")
    sides: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
    for text, label, load in zip(texts, labels, loads, strict=True):
        side = sides["test" if load == load_hp else "train"]
        side[0].append(text)
        side[1].append(label)
    if not sides["test"][0] or not sides["train"][0]:
        raise ValueError(f"--validate-load {load_hp:g}: the training side has loads "
                         f"{sorted(set(loads))}; pick one of them, not the only one")
    return sides


def latency_ms(clf: FaultClassifier, texts: list[str], batch: int, runs: int) -> float:
    """Median wall time of one forward pass over ``batch`` texts (tokenised beforehand)."""
    inputs = clf.encode((texts * (batch // len(texts) + 1))[:batch])
    times = []
    with torch.inference_mode():
        clf.model(**inputs)  # warm-up
        for _ in range(runs):
            start = time.perf_counter()
            clf.model(**inputs)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def footprint(clf: FaultClassifier, texts: list[str], path: Path, args) -> dict[str, float]:
    """Latency (batch 1, 32), weight bytes and peak inference RSS of a saved copy of ``clf``."""
    clf.save(path)
    seq_len = int(clf.encode(texts[:1])["input_ids"].shape[1])
    out = {"latency_b1_ms": latency_ms(clf, texts, 1, args.latency_runs),
           "latency_b32_ms": latency_ms(clf, texts, 32, max(3, args.latency_runs // 2)),
           "weight_mb": measure.weight_bytes(path) / 2**20,
           "body_parameters": measure.body_parameters(clf.model),
           "total_parameters": measure.total_parameters(clf.model)}
    if not args.no_memory:
        for batch in (1, 32):
            rss = measure.peak_inference_rss(path, batch_size=batch, seq_len=seq_len)
            out[f"peak_rss_b{batch}_mb"] = rss["peak_rss_bytes"] / 2**20
            out[f"model_rss_b{batch}_mb"] = (rss["peak_rss_bytes"]
                                             - rss["import_rss_bytes"]) / 2**20
            out[f"model_mem_b{batch}_mb"] = rss["model_bytes"] / 2**20
    shutil.rmtree(path, ignore_errors=True)
    return out


def train_dense(data, seed: int, args) -> FaultClassifier:
    settings = TrainSettings(family=args.family, epochs=args.dense_epochs, lr=args.dense_lr,
                             batch_size=16, seed=seed, max_length=256)
    clf, _ = train_classifier(*data["train"], *data["test"], settings)
    return clf


def prune_one(dense: FaultClassifier, method: str, ratio: float, seed: int, data,
              args) -> tuple[FaultClassifier, dict]:
    """Prune a copy of the dense model; returns the pruned classifier and the run's record."""
    clf = FaultClassifier(copy.deepcopy(dense.model), dense.tokenizer, dense.classes,
                          dense.template_version, max_length=dense.max_length)
    batches = make_batches(clf, *data["train"], batch_size=16, seed=seed)
    stages = dict(zip(("layer_share", "head_share", "channel_share"), args.shares,
                      strict=True)) if args.shares else {}
    if args.stage_epochs:
        stages.update(zip(("layer_epochs", "head_epochs", "channel_epochs"), args.stage_epochs,
                          strict=True))
    label = method
    distill, vocab = method.endswith("-kd"), method.endswith("-vocab")
    method = method.removesuffix("-kd").removesuffix("-vocab")
    config = CascadeConfig(target_ratio=ratio, epoch_scale=args.epoch_scale, seed=seed,
                           head_criterion=args.criterion, channel_criterion=args.criterion,
                           layer_criterion=args.layer_criterion,
                           distill_weight=args.distill_weight if distill else 0.0,
                           distill_temperature=args.distill_temperature,
                           distill_teacher=args.distill_teacher, rounds=args.rounds,
                           calibration_samples=args.calibration_samples,
                           lora_target=args.lora_target, include_vocab=vocab, **stages)

    def accuracy(model: torch.nn.Module) -> dict[str, float]:
        clf.model = model
        return {"accuracy": evaluate(clf, *data["test"])["accuracy"]}

    start = time.perf_counter()
    if method == "cascade":
        vocab_texts = [*data["train"][0], " ".join(textify.vocabulary())]
        model, report = run_cascade(clf.model, clf.tokenizer, batches, batches, config, accuracy,
                                    vocab_texts=vocab_texts)
    else:
        model, report = run_baseline(method, clf.model, batches, batches, config, accuracy)
    clf.model = model.eval()
    if report.tokenizer is not None:  # vocabulary trimmed: measure again with the new ids
        clf.tokenizer = report.tokenizer
        report.stages[-1].metrics = accuracy(clf.model)
    record = {"method": label, "target_ratio": ratio,
              "ratio": report.final_ratio, "accuracy": report.final_metrics.get("accuracy"),
              "seconds": time.perf_counter() - start, "stages": report.as_dict()["stages"]}
    return clf, record


def run(args) -> list[dict]:
    records = []
    for protocol in args.protocols:
        data = load_texts(protocol, args.out)
        if args.validate_load is not None:
            data = hold_out_load(data, args.validate_load)
        for seed in args.seeds:
            torch.manual_seed(seed)
            dense = train_dense(data, seed, args)
            base = {"protocol": protocol, "seed": seed}
            dense_acc = evaluate(dense, *data["test"])["accuracy"]
            records.append({**base, "method": "dense", "target_ratio": 1.0, "ratio": 1.0,
                            "accuracy": dense_acc, **footprint(dense, data["test"][0],
                                                               args.out / "model", args)})
            print(f"[{protocol} seed {seed}] dense accuracy {dense_acc:.4f}", flush=True)
            for method in args.methods:
                for ratio in args.ratios:
                    try:
                        clf, record = prune_one(dense, method, ratio, seed, data, args)
                    except ValueError as exc:
                        records.append({**base, "method": method, "target_ratio": ratio,
                                        "error": str(exc)})
                        continue
                    record.update(base, **footprint(clf, data["test"][0], args.out / "model",
                                                    args))
                    records.append(record)
                    print(f"[{protocol} seed {seed}] {method} {record['ratio']:.2f}x: "
                          f"{record['accuracy']:.4f} ({record['seconds']:.0f} s)", flush=True)
                    (args.out / "results.json").write_text(json.dumps(records, indent=1))
    return records


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    pct = [100 * v for v in values]
    return f"{np.mean(pct):.2f} +- {np.std(pct):.2f}" if len(pct) > 1 else f"{pct[0]:.2f}"


def markdown(records: list[dict], args) -> str:
    """Accuracy table per protocol (rows: ratio, columns: method) and a footprint table."""
    lines = [f"# bench_prune ({'quick' if args.quick else 'full'}): {args.family}, seeds "
             f"{args.seeds}, dense epochs {args.dense_epochs}, recovery epoch scale "
             f"{args.epoch_scale}, cascade rounds {args.rounds}", ""]
    methods = [m for m in args.methods]
    for protocol in args.protocols:
        rows = [r for r in records if r["protocol"] == protocol and "error" not in r]
        dense = [r["accuracy"] for r in rows if r["method"] == "dense"]
        lines += [f"## {protocol}: test accuracy % (mean +- std over seeds; actual ratio)", "",
                  f"dense: {_cell(dense)}", "",
                  "| target | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for ratio in args.ratios:
            cells = []
            for method in methods:
                runs = [r for r in rows if r["method"] == method and r["target_ratio"] == ratio]
                actual = f" ({np.mean([r['ratio'] for r in runs]):.2f}x)" if runs else ""
                cells.append(_cell([r["accuracy"] for r in runs]) + actual)
            lines.append(f"| ~{ratio:g}x | " + " | ".join(cells) + " |")
        lines += ["", *_footprint_table(rows), ""]
    errors = [r for r in records if "error" in r]
    lines += [f"- {r['protocol']} {r['method']} {r['target_ratio']}x: {r['error']}"
              for r in errors]
    return "\n".join(lines) + "\n"


def _footprint_table(rows: list[dict]) -> list[str]:
    keys = ("latency_b1_ms", "latency_b32_ms", "peak_rss_b1_mb", "model_rss_b1_mb",
            "model_mem_b1_mb", "weight_mb")
    lines = ["model_rss: peak RSS over the process after importing torch, torch's lazily "
             "faulted kernel pages included; model_mem: the model's own share of that peak "
             "(its weight pages and heap; measure.peak_inference_rss)", "",
             "| model | ratio | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["target_ratio"]), []).append(r)
    for (method, _), runs in groups.items():
        values = [f"{statistics.median(r[k] for r in runs):.1f}" if k in runs[0] else "-"
                  for k in keys]
        lines.append(f"| {method} | {np.mean([r['ratio'] for r in runs]):.2f}x | "
                     + " | ".join(values) + " |")
    return lines


def plot(records: list[dict], args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.protocols), figsize=(6 * len(args.protocols), 4.5),
                             squeeze=False)
    for ax, protocol in zip(axes[0], args.protocols, strict=True):
        rows = [r for r in records if r["protocol"] == protocol and "error" not in r]
        dense = [r["accuracy"] for r in rows if r["method"] == "dense"]
        if dense:
            ax.axhline(100 * np.mean(dense), color="k", ls=":", label="dense")
        for method in args.methods:
            points = sorted((r["ratio"], r["accuracy"]) for r in rows if r["method"] == method)
            if points:
                ax.plot(*zip(*[(x, 100 * y) for x, y in points], strict=True), "o-",
                        label=method)
        ax.set_xscale("log")
        ax.set_xlabel("body compression (x)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"CWRU {protocol}, {args.family}")
        ax.grid(alpha=0.3)
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
    start = time.perf_counter()
    if args.merge:
        records = [r for path in args.merge for r in json.loads(path.read_text())]
    else:
        records = run(args)
    (args.out / "results.json").write_text(json.dumps(records, indent=1))
    (args.out / "results.md").write_text(markdown(records, args))
    plot(records, args, args.out / "accuracy_vs_compression.png")
    print(markdown(records, args))
    print(f"total {time.perf_counter() - start:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
