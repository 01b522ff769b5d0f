"""A fresh virtual environment holding the base package alone (``pip install <checkout>``,
no extras, non-editable): what an edge box gets. Shared by ``tests/test_base_install.py`` (it
serves) and ``bench/bench_install.py`` (its size on disk).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class NoIndexError(RuntimeError):
    """pip cannot reach a package index."""


def clean_env() -> dict[str, str]:
    """The environment without this checkout on the path or a venv of ours in front."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def run(cmd: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def du_mb(path: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def biggest(site: Path, n: int = 12) -> str:
    """The ``n`` largest site-packages entries, ``du -sm`` each, largest first."""
    entries = sorted(site.iterdir())
    out = subprocess.run(["du", "-sm", *map(str, entries)], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    sizes = sorted(((int(line.split("\t")[0]), Path(line.split("\t")[1]).name)
                    for line in out if line.strip()), reverse=True)
    return ", ".join(f"{name} {mb}" for mb, name in sizes[:n])


def make_base_venv(tmp: Path) -> Path:
    """``tmp/venv`` with the base package installed from a copy of this checkout; NoIndexError
    when pip cannot reach an index."""
    venv = tmp / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], tmp)
    if made.returncode != 0:
        raise RuntimeError(f"python -m venv failed: {made.stderr[-2000:]}")
    python = venv / "bin" / "python"
    probe = run([str(python), "-m", "pip", "download", "-q", "--no-deps", "--dest",
                 str(tmp / "probe"), "paho-mqtt"], tmp, timeout=180)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise NoIndexError(f"pip cannot reach a package index (pip download paho-mqtt: {last})")
    # What the Dockerfile copies; installing from a copy keeps build/ and *.egg-info out of
    # the checkout while the suite runs.
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "slewguard", source / "slewguard",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    installed = run([str(python), "-m", "pip", "install", "-q", str(source)], tmp, timeout=600)
    if installed.returncode != 0:
        raise RuntimeError("pip install of the base package failed: "
                           + installed.stdout[-2000:] + installed.stderr[-3000:])
    return venv
