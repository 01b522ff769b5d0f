"""``slewguard train`` and ``slewguard predict``: fine-tune a fault classifier, then score it.

Heavy imports (torch, transformers) happen inside the commands, so ``slewguard --help`` stays fast.

Example:
    $ slewguard train --data out/sim --family tiny-bert --epochs 1 --out out/model
    $ slewguard predict out/model --data out/sim
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from rich.console import Console
from rich.table import Table

from slewguard.models import family_names
from slewguard.models.runtimes import RUNTIMES
from slewguard.signal.features import METHODS

# `slewguard train` defaults, chosen on a simulated set of another seed than the default one,
# where the earlier 3 epochs at 5e-5 left MiniLM far short of these (docs/models.md has the
# measurement).
TRAIN_DEFAULTS = {"epochs": 8, "lr": 1.5e-4, "batch_size": 16, "max_length": 64}
# backbones.SUPPORTED_FAMILIES, read from the family files' source: the registry imports torch,
# and `slewguard --help` runs without it (the base install).
FAMILY_CHOICES = family_names.choices()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``predict`` subcommands."""
    from slewguard.cli import DefaultsHelpFormatter

    train = subparsers.add_parser(
        "train", help="fine-tune a language-model fault classifier on data set directories",
        description="Turn windows into feature texts, fine-tune a backbone, write model + card. "
                    "The defaults fine-tune MiniLM on the default `slewguard dataset simulate` "
                    "set on a CPU (docs/models.md has the accuracy and the time).",
        formatter_class=DefaultsHelpFormatter)
    train.add_argument("--data", type=Path, action="append", required=True,
                       help="data set directory (slewguard dataset ...); repeat to combine")
    train.add_argument("--family", default="minilm", choices=FAMILY_CHOICES, help="backbone")
    train.add_argument("--source", type=Path, help="local model directory instead of the default")
    train.add_argument("--size", action="append", default=[], metavar="KEY=INT",
                       help="config override for gpt2/qwen2/tiny-* (e.g. n_layer=6); repeatable")
    train.add_argument("--epochs", type=int, default=TRAIN_DEFAULTS["epochs"],
                       help="passes over the training texts")
    train.add_argument("--lr", type=float, default=TRAIN_DEFAULTS["lr"],
                       help="AdamW peak learning rate (linear decay to 0)")
    train.add_argument("--batch-size", type=int, default=TRAIN_DEFAULTS["batch_size"],
                       help="texts per step")
    train.add_argument("--max-length", type=int, default=TRAIN_DEFAULTS["max_length"],
                       help="tokens per text (a textify text is ~30)")
    train.add_argument("--trim-vocab", action=argparse.BooleanOptionalAction, default=True,
                       help="cut the embedding table to textify's words before fine-tuning "
                            "(same logits; MiniLM's 30k rows -> ~40, far faster steps)")
    train.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed")
    train.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to train")
    train.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                       help="weights dtype")
    train.add_argument("--features", default="tree", choices=METHODS,
                       help="features.extract band search (tree: the reference; stft: cheaper "
                            "per window, less accurate: docs/benchmarks.md); the card keeps it")
    train.add_argument("--out", type=Path, required=True, help="model directory to write")
    train.set_defaults(func=run_train)

    predict = subparsers.add_parser(
        "predict", help="score a trained classifier on a data set (accuracy, confusion matrix)",
        description="Load a model directory, classify one side of a data set, print accuracy.",
        formatter_class=DefaultsHelpFormatter)
    predict.add_argument("model", type=Path, help="model directory written by `slewguard train`")
    predict.add_argument("--data", type=Path, required=True, help="data set directory")
    predict.add_argument("--split", default="test", choices=("train", "test"), help="which side")
    predict.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run")
    predict.add_argument("--runtime", choices=tuple(RUNTIMES),
                         help="model runtime (default: onnx where the model has model.onnx and "
                              "runs on the CPU, else torch); onnx imports no torch")
    predict.add_argument("--plot", type=Path, help="write the confusion matrix as a PNG here, "
                         "and beside it (<name>_spectra.png) the envelope spectrum of one "
                         "window per class with the model's verdict")
    predict.set_defaults(func=run_predict)

    from slewguard.models import onnx_export

    onnx_export.register(subparsers)


def _quiet_transformers(verbose: bool) -> None:
    from transformers.utils import logging as hf_logging

    if not verbose:  # load reports and weight-loading bars drown our own progress bars
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def command_line(args: argparse.Namespace) -> str:
    """The train command with every option spelled out, so it reproduces the run exactly."""
    words = ["slewguard", "train"]
    for path in args.data:
        words += ["--data", str(path)]
    for item in args.size:
        words += ["--size", item]
    for name in ("family", "source", "epochs", "lr", "batch_size", "max_length", "seed",
                 "device", "dtype", "features", "out"):
        value = getattr(args, name)
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    words += [] if getattr(args, "trim_vocab", True) else ["--no-trim-vocab"]
    return shlex.join(words)


def parse_sizes(items: list[str]) -> dict[str, int]:
    """``["n_layer=6", "n_embd=384"]`` -> ``{"n_layer": 6, "n_embd": 384}``.

    Example:
        >>> parse_sizes(["n_layer=6"])
        {'n_layer': 6}
    """
    sizes = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not value.isdigit():
            raise ValueError(f"--size {item!r} is not KEY=INT; write e.g. --size n_layer=6")
        sizes[key] = int(value)
    return sizes


def read_texts(paths: list[Path], method: str = "tree") -> tuple[dict[str, list[str]],
                                                                 dict[str, list[str]], list]:
    """Texts and labels per side over every data set directory, plus card provenance rows.

    ``method``: features.extract band search (features.METHODS).

    Every directory is read (and its checksums checked) before any text is computed.

    Example:
        >>> texts, labels, sources = read_texts([Path("out/sim")])  # doctest: +SKIP
    """
    from slewguard.models.card import DataSource
    from slewguard.signal import datasets

    splits = [datasets.read(path) for path in paths]
    texts: dict[str, list[str]] = {"train": [], "test": []}
    labels: dict[str, list[str]] = {"train": [], "test": []}
    for split in splits:
        for side in ("train", "test"):
            ws = getattr(split, side)
            texts[side] += datasets.to_texts(ws, method=method)
            labels[side] += ws.labels.tolist()
    sources = [DataSource(path=str(path), name=split.name, note=split.note,
                          n_train=len(split.train), n_test=len(split.test))
               for path, split in zip(paths, splits, strict=True)]
    return texts, labels, sources


def run_train(args: argparse.Namespace) -> int:
    """Read the data sets, fine-tune, save the model with its card and a training plot."""
    from slewguard.extras import require

    require("training", "train")
    sizes = parse_sizes(args.size)
    # bad data fails before torch is imported
    texts, labels, sources = read_texts(args.data, args.features)
    from slewguard.models.classifier import TrainSettings, train_classifier

    _quiet_transformers(getattr(args, "verbose", False))
    settings = TrainSettings(
        family=args.family, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        seed=args.seed, device=args.device, dtype=args.dtype, max_length=args.max_length,
        source=str(args.source) if args.source else None, sizes=sizes,
        trim_vocabulary=args.trim_vocab)
    clf, history = train_classifier(texts["train"], labels["train"], texts["test"],
                                    labels["test"], settings)
    clf.card.update(data=[s.model_dump() for s in sources], command=command_line(args),
                    features=args.features)
    clf.save(args.out)
    from slewguard.models.onnx_export import export_beside

    export_beside(args.out, texts["test"], "test side of the training data",
                  Console().print)
    metrics = clf.card["metrics"]
    plot_training(history, metrics["confusion"], clf.classes, args.out / "training.png")
    show_confusion(metrics["confusion"], clf.classes,
                   f"test accuracy {metrics['accuracy']['test']:.2%} "
                   f"(train {metrics['accuracy']['train']:.2%})")
    Console().print(f"model, card.json, README.md and training.png written to {args.out}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Classify one side of a data set with a saved model and print accuracy + confusion."""
    from slewguard.extras import require
    from slewguard.models.card import features_method
    from slewguard.models.runtimes import choose_runtime, load
    from slewguard.models.scoring import evaluate
    from slewguard.signal import datasets

    runtime = choose_runtime(args.model, args.runtime, args.device)
    if args.plot is not None:
        require("plots", "predict --plot")
    if runtime == "torch":
        require("training", "predict (torch runtime)")
        _quiet_transformers(getattr(args, "verbose", False))
    clf = load(args.model, device=args.device, runtime=runtime)
    ws = getattr(datasets.read(args.data), args.split)
    if clf.template_version == "t3":  # the evidence text, as the daemon writes it
        from slewguard.models.build_evidence import window_texts

        texts = window_texts(ws)
        Console().print("template t3: a data set has no commissioning baseline, so every "
                        "text reads 'level nobase' (the daemon learns one per bearing)",
                        highlight=False)
    else:
        texts = datasets.to_texts(ws, method=features_method(clf.card))
    result = evaluate(clf, texts, ws.labels.tolist())
    show_confusion(result["confusion"], clf.classes,
                   f"{args.split} accuracy {result['accuracy']:.2%} on {len(ws)} windows "
                   f"({clf.runtime} runtime)")
    if args.plot:
        plot_training([], result["confusion"], clf.classes, args.plot)
        Console().print(f"confusion matrix written to {args.plot}", highlight=False,
                        soft_wrap=True)
        spectra = plot_spectra(ws, clf.predict(texts), args.plot)
        Console().print(f"envelope spectra written to {spectra}", highlight=False,
                        soft_wrap=True)
    return 0


def plot_spectra(ws, predicted: list[str], path: Path) -> Path:
    """The daemon's envelope-spectrum picture (``signal.envelope_plot``) of the first window of
    each class in ``ws``, the model's verdict on each in the heading; written beside ``path``
    as ``<stem>_spectra.png``."""
    import numpy as np

    from slewguard.signal import envelope_plot

    shown = sorted(np.unique(ws.labels, return_index=True)[1])  # each class's first window
    panels = [envelope_plot.measure(ws.windows[i], ws.sample_rate_hz, str(ws.bearings()[i]),
                                    float(ws.rpm[i]), str(ws.labels[i])) for i in shown]
    verdicts = "; ".join(f"{ws.labels[i]}: model says {predicted[i]}" for i in shown)
    out = path.with_name(f"{path.stem}_spectra.png")
    envelope_plot.plot(panels, out, f"One window per class, as the daemon measures it\n{verdicts}")
    return out


def show_confusion(confusion: list[list[int]], classes: list[str], title: str) -> None:
    """Print a confusion matrix (rows true, columns predicted) as a rich table."""
    table = Table(title=title)
    table.add_column("true \\ predicted")
    for name in classes:
        table.add_column(name, justify="right")
    for name, row in zip(classes, confusion, strict=True):
        table.add_row(name, *(str(n) for n in row))
    Console().print(table)


def plot_training(history: list[dict[str, float]], confusion: list[list[int]],
                  classes: list[str], path: Path) -> None:
    """PNG: loss and test accuracy per epoch (when given) beside the test confusion matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if history else 1, figsize=(11 if history else 5.5, 4.5),
                             squeeze=False)
    if history:
        epochs = [r["epoch"] for r in history]
        ax = axes[0, 0]
        ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
        ax.plot(epochs, [r["test_accuracy"] for r in history], "s-", label="test accuracy")
        ax.set_xlabel("epoch")
        ax.set_ylim(bottom=0)
        ax.legend()
        ax.grid(alpha=0.3)
    ax = axes[0, -1]
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion (rows true)")
    darkest = max(max(row) for row in confusion) or 1
    for i, row in enumerate(confusion):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center",
                    color="white" if n > darkest / 2 else "black")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
