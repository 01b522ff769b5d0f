"""``slewguard prune`` and ``slewguard sia``: prune a trained classifier; check the SIA of a model.

Heavy imports happen inside the commands so that ``slewguard --help`` stays fast.

Example:
    $ slewguard prune out/model --data out/cwru --target-ratio 2.5 --out out/pruned
    $ slewguard sia smollm2
    $ slewguard sia out/model --data out/cwru
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from slewguard.models.card import features_method

DISTILL_WEIGHT = 0.0
METHOD_CHOICES = ("cascade", "magnitude", "wanda", "taylor-lora", "shortgpt")
CRITERIA = ("l1", "wanda", "taylor")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prune`` and ``sia`` subcommands."""
    prune = subparsers.add_parser(
        "prune", help="prune a trained classifier (cascade or a baseline) to a compression ratio",
        description="Layers -> LoRA -> heads -> LoRA -> FFN channels -> LoRA (paper section 1), "
                    "or a one-shot baseline; writes a loadable model directory + report.")
    prune.add_argument("model", type=Path, help="model directory written by `slewguard train`")
    prune.add_argument("--data", type=Path, action="append", required=True,
                       help="data set directory (train side: recovery + calibration, test side: "
                            "accuracy); repeat to combine")
    prune.add_argument("--target-ratio", type=float, required=True,
                       help="body-parameter compression dense/pruned, e.g. 2.5")
    prune.add_argument("--method", default="cascade", choices=METHOD_CHOICES, help="pruner")
    prune.add_argument("--out", type=Path, required=True, help="pruned model directory to write")
    prune.add_argument("--head-criterion", default="taylor", choices=CRITERIA,
                       help="taylor (default, needs a backward pass) or e.g. wanda (forward only)")
    prune.add_argument("--channel-criterion", default="taylor", choices=CRITERIA)
    prune.add_argument("--shares", type=float, nargs=3, metavar=("LAYERS", "HEADS", "CHANNELS"),
                       help="split of the removal budget over the stages (sums to 1)")
    prune.add_argument("--rounds", type=int,
                       help="cascade: run the head and channel stages this many times, each "
                       "round with its part of their shares and epochs (default: "
                       "CascadeConfig's, 2; 1: the paper's three stages)")
    prune.add_argument("--epoch-scale", type=float, default=1.0,
                       help="multiplies the paper's 10/10/30 recovery epochs (0.1 = quick)")
    prune.add_argument("--calibration-samples", type=int, default=128,
                       help="training examples used to score each stage")
    prune.add_argument("--coupling", default="auto", choices=("auto", "on", "off"),
                       help="GQA/gated-FFN coupling-aware units (auto: from the SIA check)")
    prune.add_argument("--include-vocab", action="store_true",
                       help="finally trim the vocabulary to the tokens the data uses")
    prune.add_argument("--distill-weight", type=float, default=DISTILL_WEIGHT,
                       help="recovery also distils from the dense model's logits with this "
                            "weight, 0..1 (0: labels only, the paper)")
    prune.add_argument("--distill-temperature", type=float, default=2.0,
                       help="softmax temperature of the distillation")
    prune.add_argument("--batch-size", type=int, default=16, help="texts per recovery step")
    prune.add_argument("--seed", type=int, default=42, help="recovery seed")
    prune.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run")
    prune.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    prune.set_defaults(func=run_prune)

    sia = subparsers.add_parser(
        "sia", help="check the Structural Independence Assumption (static + measured)",
        description="Static: shared KV heads? gated FFN? Measured (with --data): pairwise "
                    "interactions of masked components and ranking stability.")
    sia.add_argument("model", help="model directory, or a family name (minilm, smollm2, gpt2, "
                                   "tiny-bert, tiny-llama, ...)")
    sia.add_argument("--data", type=Path, help="data set directory for the measured check")
    sia.add_argument("--samples", type=int, default=32, help="calibration texts (measured)")
    sia.add_argument("--pairs", type=int, default=8, help="sampled pairs per pair type")
    sia.add_argument("--layer", type=int, action="append", help="layers to probe (default: "
                                                                "the middle one)")
    sia.add_argument("--json", type=Path, help="also write the verdicts as JSON here")
    sia.set_defaults(func=run_sia)


def _texts(paths: list[Path], side: str, method: str) -> tuple[list[str], list[str], list[dict]]:
    """Texts (features by the model's band search ``method``), labels and provenance rows."""
    from slewguard.signal import datasets

    texts, labels, sources = [], [], []
    for path in paths:
        split = datasets.read(path)
        ws = getattr(split, side)
        texts += datasets.to_texts(ws, method=method)
        labels += ws.labels.tolist()
        sources.append({"path": str(path), "name": split.name, "note": split.note})
    return texts, labels, sources


def run_prune(args: argparse.Namespace) -> int:
    """Load, prune, evaluate, save (model + card + prune_report.json + prune.png)."""
    from slewguard.extras import require

    require("training", "prune")
    import torch

    from slewguard.models.classifier import load, make_batches
    from slewguard.models.prune.baselines import run_baseline
    from slewguard.models.prune.cascade import CascadeConfig, run_cascade
    from slewguard.models.scoring import evaluate

    _quiet_transformers(getattr(args, "verbose", False))
    clf = load(args.model, device=args.device)
    clf.model.to(getattr(torch, args.dtype))
    method = features_method(clf.card)
    train_texts, train_labels, sources = _texts(args.data, "train", method)
    test_texts, test_labels, _ = _texts(args.data, "test", method)
    batches = make_batches(clf, train_texts, train_labels, args.batch_size, args.seed)
    names = ("layer_share", "head_share", "channel_share")
    overrides = dict(zip(names, args.shares, strict=True)) if args.shares else {}
    if args.rounds is not None:
        overrides["rounds"] = args.rounds
    config = CascadeConfig(
        target_ratio=args.target_ratio, head_criterion=args.head_criterion,
        channel_criterion=args.channel_criterion, epoch_scale=args.epoch_scale,
        calibration_samples=args.calibration_samples, seed=args.seed,
        coupling_aware={"auto": None, "on": True, "off": False}[args.coupling],
        include_vocab=args.include_vocab, distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature, **overrides)
    args.rounds = config.rounds  # the card's command names the rounds that ran

    def accuracy(model: torch.nn.Module) -> dict[str, float]:
        clf.model = model
        return {"accuracy": evaluate(clf, test_texts, test_labels)["accuracy"]}

    if args.method == "cascade":
        from slewguard.signal import textify

        vocab_texts = [*train_texts, " ".join(textify.vocabulary())]
        model, report = run_cascade(clf.model, clf.tokenizer, batches, batches, config, accuracy,
                                    vocab_texts=vocab_texts if args.include_vocab else None)
    else:
        model, report = run_baseline(args.method, clf.model, batches, batches, config, accuracy)
    clf.model = model.eval()
    if report.tokenizer is not None:
        clf.tokenizer = report.tokenizer
    _save(clf, report, args, sources)
    from slewguard.models.onnx_export import export_beside

    export_beside(args.out, test_texts, "test side of the pruning data")
    return 0


def _save(clf, report, args: argparse.Namespace, sources: list[dict]) -> None:
    from rich.console import Console

    from slewguard.models.prune import measure

    clf.card["pruning"] = {"method": report.method, "target_ratio": report.target_ratio,
                           "ratio": report.final_ratio,
                           "dense_body_parameters": report.dense_body_parameters,
                           "body_parameters": measure.body_parameters(clf.model),
                           "dense_metrics": report.dense_metrics,
                           "metrics": report.final_metrics, "data": sources,
                           "command": shlex.join(["slewguard", "prune", *_argv(args)])}
    clf.save(args.out)
    (args.out / "prune_report.json").write_text(json.dumps(report.as_dict(), indent=2))
    plot_report(report, args.out / "prune.png")
    Console().print(f"{report.method}: {report.final_ratio:.2f}x (target "
                    f"{report.target_ratio:g}x), accuracy {report.dense_metrics} -> "
                    f"{report.final_metrics}; written to {args.out}")


def _argv(args: argparse.Namespace) -> list[str]:
    words = [str(args.model)]
    for path in args.data:
        words += ["--data", str(path)]
    for name in ("target_ratio", "method", "out", "head_criterion", "channel_criterion",
                 "epoch_scale", "rounds", "calibration_samples", "coupling", "distill_weight",
                 "distill_temperature", "batch_size", "seed",
                 "device", "dtype"):
        words += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.shares:
        words += ["--shares", *map(str, args.shares)]
    return words + (["--include-vocab"] if args.include_vocab else [])


def plot_report(report, path: Path) -> None:
    """PNG: compression ratio and accuracy after each stage (before and after recovery)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["dense", *[s.stage for s in report.stages]]
    ratios = [1.0, *[s.ratio for s in report.stages]]
    after = [report.dense_metrics.get("accuracy"), *[s.metrics.get("accuracy")
                                                     for s in report.stages]]
    before = [after[0], *[s.metrics_before_recovery.get("accuracy", s.metrics.get("accuracy"))
                          for s in report.stages]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(names, ratios, color="tab:blue")
    left.set_ylabel("body compression (x)")
    if any(a is not None for a in after):
        right.plot(names, before, "x--", label="before recovery")
        right.plot(names, after, "o-", label="after recovery")
        right.set_ylabel("test accuracy")
        right.legend()
    fig.suptitle(f"{report.method} to {report.target_ratio:g}x")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_sia(args: argparse.Namespace) -> int:
    """Print the static verdict and, with --data, the measured one."""
    from slewguard.extras import require

    require("training", "sia")
    from slewguard.models.prune.sia import format_report, measured_check, static_check

    _quiet_transformers(getattr(args, "verbose", False))
    clf = _sia_classifier(args.model, args.data)
    static = static_check(clf.model.config)
    measured = None
    if args.data is not None:
        from slewguard.models.classifier import make_batches

        texts, labels, _ = _texts([args.data], "train", features_method(clf.card))
        texts, labels = texts[: args.samples], labels[: args.samples]
        batches = make_batches(clf, texts, labels, batch_size=8, seed=0)
        measured = measured_check(clf.model, batches, layers=args.layer,
                                  pairs_per_type=args.pairs)
    print(format_report(static, measured))
    if args.data is None:
        print("(pass --data DIR for the measured check)")
    if args.json:
        out = {"static": {**static.__dict__, "satisfied": static.satisfied}}
        if measured is not None:
            out["measured"] = {**measured.__dict__, "satisfied": measured.satisfied}
        args.json.write_text(json.dumps(out, indent=2))
    return 0


def _sia_classifier(model: str, data: Path | None):
    """A FaultClassifier from a model directory, or a fresh backbone of a family name."""
    from slewguard.models import backbones
    from slewguard.models.classifier import FaultClassifier, current_template_version, load

    if Path(model).is_dir():
        return load(Path(model))
    classes = ["healthy", "inner_race", "outer_race", "rolling_element"]
    if data is not None:
        from slewguard.signal import datasets

        classes = datasets.read(data).classes
    if model not in backbones.SUPPORTED_FAMILIES:
        raise ValueError(f"model={model!r} is neither a directory nor a family; families: "
                         f"{', '.join(backbones.SUPPORTED_FAMILIES)}")
    # shipped weights bring their tokenizer; random models get the word-level one
    vocabulary = None if backbones.pretrained(model) else backbones.textify_vocabulary()
    backbone = backbones.build(model, len(classes), vocabulary=vocabulary)
    return FaultClassifier(backbone.model, backbone.tokenizer, classes,
                           current_template_version())


def _quiet_transformers(verbose: bool) -> None:
    from transformers.utils import logging as hf_logging

    if not verbose:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
