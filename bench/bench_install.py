"""The base install's size on disk: a fresh venv, ``pip install <checkout>`` without extras.

What an edge box gets (no torch, no transformers; the shipped models and their ONNX graphs
included), measured with ``du -sm`` against the 300 MB goal, with the largest site-packages
entries. pip compiles bytecode at install time, as it does on a real box; the line
``without __pycache__`` says how much of the size that is.

    .venv/bin/python bench/bench_install.py          # ~1 min: pip fetches numpy, onnxruntime, ...
    .venv/bin/python bench/bench_install.py --keep /tmp/base   # keep it: /tmp/base/venv/bin/python

A kept venv runs the daemon as an edge box would: ``bench/bench_service.py --python
/tmp/base/venv/bin/python``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.base_venv: the same install the test serves from

from tests.base_venv import biggest, du_mb, make_base_venv  # noqa: E402

GOAL_MB = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="install into DIR/venv and keep it")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        report(make_base_venv(args.keep))
        return
    with tempfile.TemporaryDirectory(prefix="slewguard-base-") as tmp:
        report(make_base_venv(Path(tmp)))


def report(venv: Path) -> None:
    """Print the venv's size against the goal and its largest site-packages entries."""
    size = du_mb(venv)
    site = next((venv / "lib").glob("python3*/site-packages"))
    cache = sum(f.stat().st_size for f in venv.rglob("*.pyc")) / 2**20
    print(f"base venv: {size} MB (du -sm), goal {GOAL_MB} MB: "
          f"{'met' if size <= GOAL_MB else f'over by {size - GOAL_MB} MB'}")
    print(f"without __pycache__: {size - cache:.0f} MB")
    print(f"largest site-packages entries (MB): {biggest(site)}")


if __name__ == "__main__":
    main()
