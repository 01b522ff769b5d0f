"""Inference dtype: accuracy and CPU time of one model directory in float32 and bfloat16.

The daemon's ``model.dtype`` casts the weights at load. This rebuilds the test splits the model
was built with (the card's ``build`` section: same seeds, same band search; CWRU from
../shared/data/cwru when the card used it), then for each dtype reports accuracy per split,
how many predictions differ from float32, the largest probability difference, and the CPU
time of ``predict_proba`` per window at the daemon's batch of 16 on one thread (median of
``--runs``). bfloat16 pays off only where the CPU has AVX-512 BF16 or AMX (lscpu flags).

    .venv/bin/python bench/bench_dtype.py                          # the shipped model
    .venv/bin/python bench/bench_dtype.py --model out/default_stft --runs 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slewguard.models.build_config import BuildConfig  # noqa: E402
from slewguard.models.card import read  # noqa: E402
from slewguard.models.classifier import load  # noqa: E402
from slewguard.models.shipped import default_model_dir  # noqa: E402

DTYPES = ("float32", "bfloat16")


def test_splits(model: Path) -> list:
    """The model's test splits, rebuilt from its card's build settings (quietly)."""
    from slewguard.models.build_data import build_data

    build = read(model).model_dump().get("build") or {}
    if not build:
        raise SystemExit(f"{model}/card.json has no build section: pass a model written by "
                         "`slewguard build-default-model`")
    fields = {k: v for k, v in build.items() if k in BuildConfig.model_fields}
    config = BuildConfig(**{**fields, "show_progress": False})
    return build_data(config, lambda *a: None).tests


def cpu_ms_per_window(clf, texts: list[str], runs: int) -> float:
    batch = (texts * 16)[:16]
    clf.predict_proba(batch)
    times = []
    for _ in range(runs):
        start = time.process_time()
        for _ in range(5):
            clf.predict_proba(batch)
        times.append(1000 * (time.process_time() - start) / 5 / len(batch))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: "
                        "the shipped model)")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    model = args.model or default_model_dir()
    tests = test_splits(model)
    print(f"model {model}, features {read(model).features}; test splits: "
          + ", ".join(f"{t.name} {len(t)}" for t in tests))
    print("\n| dtype | " + " | ".join(f"{t.name} accuracy" for t in tests)
          + " | predictions unlike float32 | max probability difference "
          "| predict CPU ms per window (batch 16) |")
    print("|---" * (len(tests) + 4) + "|")
    reference = None
    for dtype in DTYPES:
        clf = load(model, dtype=dtype)
        proba = [clf.predict_proba(t.texts) for t in tests]
        if reference is None:
            reference = proba
        accuracy = [np.mean([clf.classes[i] == y for i, y in zip(p.argmax(1), t.labels,
                                                                 strict=True)])
                    for p, t in zip(proba, tests, strict=True)]
        differ = sum(int((p.argmax(1) != r.argmax(1)).sum())
                     for p, r in zip(proba, reference, strict=True))
        worst = max(float(np.abs(p - r).max()) for p, r in zip(proba, reference, strict=True))
        cpu = cpu_ms_per_window(clf, tests[0].texts, args.runs)
        print(f"| {dtype} | " + " | ".join(f"{a:.1%}" for a in accuracy)
              + f" | {differ} of {sum(map(len, tests))} | {worst:.3f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
