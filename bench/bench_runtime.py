"""Model runtimes side by side, in one sitting: torch float32, torch bfloat16, ONNX Runtime.

Each runtime runs in its own fresh process that does what the daemon does up to serving:
imports the daemon (``slewguard.service.app``: pipeline, trust layer, features), loads the
model with ``App``'s ``load_classifier`` from a ServiceConfig (``model.runtime``,
``model.dtype``, one intra-op thread as the daemon's default), loads the trust layer and scores
one window. Reported per runtime:

- start-up: wall time from spawning the process to that first scored window (the daemon's
  ``/readyz`` also waits for the broker; bench_service.py measures the whole daemon);
- RSS after the daemon's imports (before any runtime or model), idle (VmRSS right after
  start-up) and peak (VmHWM after all the inference below);
- model inference CPU per window (``predict_proba`` on feature texts, process CPU time,
  median of ``--runs``) at batch 1 and at the daemon's micro-batch of 16.

Texts: the model's own test texts (``onnx_export.parity_texts``: the demo-fleet test side of
the card, simulated again from its spec). bfloat16 pays only where lscpu lists avx512_bf16 /
amx_bf16 (printed).

    .venv/bin/python bench/bench_runtime.py                        # shipped default model
    .venv/bin/python bench/bench_runtime.py --model fast --runs 7 --json out/runtime.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {  # name -> model config section
    "torch float32": {"runtime": "torch", "dtype": "float32"},
    "torch bfloat16": {"runtime": "torch", "dtype": "bfloat16"},
    "onnx": {"runtime": "onnx", "dtype": "float32"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default",
                   help="shipped model name (default, fast) or a model directory")
    p.add_argument("--runs", type=int, default=5, help="repeats per batch size (median)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help="runtimes to measure")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def status_kib(field: str) -> int:
    """A VmRSS / VmHWM line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"/proc/self/status has no {field}: run on Linux")


def model_section(model: str, variant: str) -> dict:
    where = {"shipped": model} if model in ("default", "fast") else {"path": model}
    return {**where, **VARIANTS[variant], "torch_threads": 1, "onnx_threads": 1}


def child(args: argparse.Namespace) -> None:
    """One runtime in this fresh process; prints 'ready' then one JSON line of results."""
    from slewguard.service.app import load_classifier
    from slewguard.service.config import config_from_dict
    from slewguard.service.trust import TrustLayer, apply_torch_threads, load_trust

    imports = status_kib("VmRSS")  # the daemon's code before any runtime or model
    texts = json.loads(args.texts.read_text())
    sensors = [{"sensor_id": "s1", "bearing": "slew-4pc-1000"}]
    config = config_from_dict({"site": "bench", "sensors": sensors,
                               "model": model_section(args.model, args.child)}, env={})
    clf = load_classifier(config)
    if clf.runtime == "torch":
        apply_torch_threads(1)
    TrustLayer(load_trust(clf))
    clf.predict_proba(texts[:1])
    print("ready", flush=True)
    idle = status_kib("VmRSS")
    per_window = {}
    for batch in (1, 16):
        chunks = [texts[i:i + batch] for i in range(0, len(texts), batch)]
        chunks = [c for c in chunks if len(c) == batch]
        clf.predict_proba(chunks[0])  # warm-up at this shape
        runs = []
        for _ in range(args.runs):
            start = time.process_time()
            for chunk in chunks:
                clf.predict_proba(chunk)
            runs.append((time.process_time() - start) / (len(chunks) * batch))
        per_window[batch] = statistics.median(runs)
    print(json.dumps({"runtime": clf.runtime, "imports_kib": imports, "idle_kib": idle,
                      "peak_kib": status_kib("VmHWM"),
                      "cpu_ms_b1": per_window[1] * 1e3, "cpu_ms_b16": per_window[16] * 1e3,
                      "torch_loaded": "torch" in sys.modules}), flush=True)


def measure(args: argparse.Namespace, variant: str, texts_file: Path) -> dict:
    """Spawn the child for ``variant``; start-up is spawn -> its 'ready' line."""
    command = [sys.executable, __file__, "--child", variant, "--texts", str(texts_file),
               "--model", args.model, "--runs", str(args.runs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    startup = None
    for line in proc.stdout:
        if line.strip() == "ready":
            startup = time.perf_counter() - start
        elif line.startswith("{"):
            row = json.loads(line)
    if proc.wait() != 0 or startup is None:
        raise SystemExit(f"{variant}: the child failed (exit {proc.returncode})")
    return {"variant": variant, "startup_s": startup, **row}


def cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split()
    return ", ".join(f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni") if f in flags) or "none"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    from slewguard.models import card as model_card
    from slewguard.models.onnx_export import parity_texts
    from slewguard.models.shipped import SHIPPED_MODELS

    path = SHIPPED_MODELS.get(args.model, Path(args.model))
    texts, source = parity_texts(model_card.read(path))
    print(f"model {path}; {len(texts)} texts ({source}); cpu flags: {cpu_flags()}; "
          f"{os.cpu_count()} cores; one intra-op thread")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        for variant in args.variants:
            rows.append(measure(args, variant, texts_file))
    print("| runtime | start-up to first window (s) | RSS daemon imports (MiB) | RSS idle (MiB) "
          "| RSS peak (MiB) | CPU/window batch 1 (ms) | CPU/window batch 16 (ms) "
          "| torch imported |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['startup_s']:.2f} | {r['imports_kib'] / 1024:.0f} | "
              f"{r['idle_kib'] / 1024:.0f} | "
              f"{r['peak_kib'] / 1024:.0f} | {r['cpu_ms_b1']:.2f} | {r['cpu_ms_b16']:.2f} | "
              f"{'yes' if r['torch_loaded'] else 'no'} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
