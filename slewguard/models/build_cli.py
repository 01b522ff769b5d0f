"""The ``slewguard build-default-model`` subcommand: its options, the command line the card
records, and the run that turns them into a ``BuildConfig`` and calls ``default.build``.

Example:
    >>> parser = argparse.ArgumentParser()
    >>> register(parser.add_subparsers())
    >>> command_line(parser.parse_args(["build-default-model", "--quick", "--out", "out/q"]))
    'slewguard build-default-model --seed 0 --out out/q --quick'
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from slewguard.models.build_config import WEIGHTS_DTYPES, BuildConfig
from slewguard.models.default import build
from slewguard.models.shipped import DEFAULT_MODEL_DIR, SHIPPED_MODELS
from slewguard.signal.features import METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build-default-model`` subcommand."""
    parser = subparsers.add_parser(
        "build-default-model", help="rebuild the classifier shipped in slewguard/models/default",
        description="Simulated slewing data + CWRU -> texts -> MiniLM fine-tune -> cascade "
                    "pruning -> vocabulary trim -> temperature + OOD detector -> model + card.")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="model directory")
    parser.add_argument("--quick", action="store_true",
                        help="tiny backbone and a few short windows (seconds; for tests)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, training, pruning")
    parser.add_argument("--target-ratio", type=float, help="body compression (default 8; quick 2)")
    parser.add_argument("--cwru-root", type=Path, help="CWRU directory (default: shared data)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--features", choices=METHODS, default="tree",
                        help="features.extract band search (default tree; stft: cheaper "
                             "features, less accurate: docs/benchmarks.md)")
    parser.add_argument("--weights-dtype", choices=WEIGHTS_DTYPES, default="float32",
                        help="store the weights in this dtype (bfloat16: half the file; the "
                             "card's accuracies are measured on the rounded weights)")
    parser.add_argument("--template", choices=("t1", "t3"), default="t1",
                        help="t1: features of simulated slewing windows and CWRU (default); "
                             "t3: rig-invariant evidence of the randomised simulator, CWRU and "
                             "UESTC (docs/transfer.md)")
    parser.add_argument("--transfer-results", type=Path, metavar="JSON",
                        help="bench/bench_transfer.py's transfer.json: its leave-one-rig-out "
                             "numbers for this recipe go into the card")
    parser.add_argument("--keep-dense", type=Path, metavar="DIR",
                        help="also save the fine-tuned dense model (before pruning) in DIR")
    parser.set_defaults(func=run_build)


def command_line(args: argparse.Namespace) -> str:
    """The command with its options spelled out, as the card records it."""
    words = ["slewguard", "build-default-model", "--seed", str(args.seed)]
    if Path(args.out).resolve() != DEFAULT_MODEL_DIR:  # the shipped dir is the default
        words += ["--out", str(args.out)]
    words += ["--quick"] if args.quick else []
    words += ["--threads", str(args.threads)] if args.threads != 1 else []
    words += ["--features", args.features] if args.features != "tree" else []
    words += ["--weights-dtype", args.weights_dtype] if args.weights_dtype != "float32" else []
    words += ["--template", args.template] if getattr(args, "template", "t1") != "t1" else []
    for name in ("target_ratio", "cwru_root", "transfer_results"):
        if getattr(args, name) is not None:
            words += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return shlex.join(words)


def run_build(args: argparse.Namespace) -> int:
    """Run the build from parsed arguments."""
    from slewguard.extras import require

    require("training", "build-default-model")
    from transformers.utils import logging as hf_logging

    if not getattr(args, "verbose", False):
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if args.quick and Path(args.out).resolve() in SHIPPED_MODELS.values():
        raise ValueError(f"--quick builds a tiny test model; it must not replace the shipped "
                         f"one in {args.out}: pass --out DIR")
    config = BuildConfig.for_mode(args.quick, seed=args.seed, target_ratio=args.target_ratio,
                                  cwru_root=args.cwru_root, threads=args.threads,
                                  features=args.features,
                                  weights_dtype=args.weights_dtype,
                                  template=getattr(args, "template", "t1"),
                                  transfer_results=getattr(args, "transfer_results", None))
    keep = getattr(args, "keep_dense", None)
    if keep is not None and Path(keep).resolve() == Path(args.out).resolve():
        raise ValueError(f"--keep-dense {keep} is the --out directory: pass another DIR")
    build(config, args.out, command=command_line(args), dense_out=keep)
    return 0
