"""The CWRU bearing recordings as a windowed train/test ``Split`` (``datasets``' types).

The 12 kHz drive-end files are listed in ``MANIFEST.tsv`` beside them. They are split by recording
*before* windowing, so no recording is on both sides (the one exception, Normal in
"paper-4class", is a time split and the note says so). Protocols: "faults-3class" (IR/B/OR,
train 0-2 HP, test 3 HP) and "paper-4class" (plus Normal).

Example:
    >>> load_cwru(protocol="faults-3class").train.counts()   # doctest: +SKIP
    {'inner_race': ..., 'outer_race': ..., 'rolling_element': ...}
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from slewguard.signal.datasets import (
    DatasetMissingError,
    Split,
    WindowSet,
    _frame,
    _sha256,
    _track,
    concat,
)

CWRU_CLASSES = {"Normal": "healthy", "IR": "inner_race", "OR": "outer_race", "B": "rolling_element"}
CWRU_FS_HZ, CWRU_BEARING = 12000.0, "cwru-6205"
PROTOCOLS = ("faults-3class", "paper-4class")
NORMAL_TRAIN_FRACTION = 0.6  # paper-4class: the first 60% of the one Normal recording train


def default_cwru_root() -> Path:
    """$SLEWGUARD_CWRU_DIR, else ``<repo>/../shared/data/cwru``."""
    env = os.environ.get("SLEWGUARD_CWRU_DIR")
    repo = Path(__file__).resolve().parents[2]
    return Path(env) if env else (repo / ".." / "shared" / "data" / "cwru").resolve()


def _read_cwru_manifest(root: Path) -> list[dict]:
    """The rows of ``<root>/MANIFEST.tsv``, numbers converted."""
    if not Path(root).is_dir():
        raise DatasetMissingError(
            f"CWRU directory {root} does not exist: put the 12 kHz drive-end .mat files and "
            "MANIFEST.tsv there, or point SLEWGUARD_CWRU_DIR (or --root) at them")
    manifest = Path(root) / "MANIFEST.tsv"
    if not manifest.is_file():
        raise DatasetMissingError(f"{manifest} is missing: the CWRU directory needs MANIFEST.tsv")
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for row in rows:
        row.update({k: float(row[k]) for k in ("fault_size_in", "rpm", "fs_hz_actual")})
        row.update({k: int(row[k]) for k in ("load_hp", "n_samples", "cwru_file_no")})
    return rows


def read_cwru_recording(root: Path, row: dict) -> tuple[np.ndarray, float]:
    """One MANIFEST row's drive-end signal at 12 kHz (decimated if recorded faster) and its rpm.

    Variables are picked by file number (``X<no>_DE_time``, ``X<no>RPM``), so a file that also
    carries another recording's variables (the original 99.mat does) still gives the right one.

    Example (``row`` is the MANIFEST row of 12k_DE_Normal_0.mat; needs the CWRU recordings):
        >>> x, rpm = read_cwru_recording(root, row)   # doctest: +SKIP
        >>> len(x), rpm   # doctest: +SKIP
        (60985, 1796.0)
    """
    from scipy.io import loadmat
    from scipy.signal import decimate

    path, key = Path(root) / row["file"], row["de_key"]
    if not re.fullmatch(rf"X0*{row['cwru_file_no']}_DE_time", key):
        raise ValueError(f"{path}: de_key {key!r} is not file number {row['cwru_file_no']}")
    data = loadmat(path)
    if key not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(f"{path}: no variable {key!r} (found {found}); fix MANIFEST.tsv")
    x = np.asarray(data[key], dtype=np.float64).ravel()
    if len(x) != row["n_samples"]:
        raise ValueError(f"{path}: {len(x)} samples, MANIFEST.tsv says {row['n_samples']}")
    rpm_key = key.replace("_DE_time", "RPM")
    rpm = float(np.ravel(data[rpm_key])[0]) if rpm_key in data else row["rpm"]
    if rpm != row["rpm"]:
        raise ValueError(f"{path}: {rpm_key}={rpm} but MANIFEST rpm={row['rpm']}: fix MANIFEST.tsv")
    factor = row["fs_hz_actual"] / CWRU_FS_HZ
    if factor != round(factor) or factor < 1:
        raise ValueError(f"{path}: fs_hz_actual={row['fs_hz_actual']} is not a multiple of 12 kHz")
    return (decimate(x, int(factor)) if factor > 1 else x), rpm  # Normal: 48 kHz -> 12 kHz


def _protocol_jobs(rows: list[dict], protocol: str) -> tuple[list[tuple[str, dict, bool]], str]:
    """(side, row, time_split) per recording, and the note that goes with the protocol."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is unknown: choose one of {PROTOCOLS}")
    classes = ("IR", "B", "OR") if protocol == "faults-3class" else ("Normal", "IR", "B", "OR")
    jobs = [("test" if r["load_hp"] == 3 else "train", r, False)
            for r in rows if r["class"] in classes]
    note = (f"CWRU 12 kHz drive end, {protocol}: {'/'.join(classes)}, faults pooled over "
            "0.007/0.014/0.021 in; train on 0/1/2 HP recordings, test on 3 HP; no recording on "
            "both sides.")
    normal = [r for r in rows if r["class"] == "Normal"]
    if protocol == "faults-3class" or any(r["load_hp"] == 3 for r in normal):
        return jobs, note  # (with Normal at 3 HP present, Normal changes load like the faults)
    if not normal:
        raise DatasetMissingError("paper-4class needs 12k_DE_Normal_0.mat listed in MANIFEST.tsv")
    jobs = [j for j in jobs if j[1]["class"] != "Normal"]
    return jobs + [("train", normal[0], True), ("test", normal[0], True)], note.replace(
        "no recording on both sides.", "except Normal: one 0 HP recording (48 kHz decimated by "
        "4) split in time, first 60% train, last 40% test, so Normal does NOT change load.")


def _window_recording(root: Path, side: str, row: dict, time_split: bool, window_n: int,
                      hop_n: int) -> WindowSet:
    x, rpm = read_cwru_recording(root, row)
    offset = 0
    if time_split:  # split before windowing: no window straddles the cut
        cut = int(round(NORMAL_TRAIN_FRACTION * len(x)))
        x, offset = (x[:cut], 0) if side == "train" else (x[cut:], cut)
    windows = _frame(x, window_n, hop_n)
    b = len(windows)
    return WindowSet(
        windows=windows, labels=np.full(b, CWRU_CLASSES[row["class"]]), rpm=np.full(b, rpm),
        sample_rate_hz=CWRU_FS_HZ, bearing=CWRU_BEARING,
        recording=np.full(b, Path(row["file"]).stem), load_hp=np.full(b, row["load_hp"]),
        fault_size_in=np.full(b, row["fault_size_in"]),
        start_s=(offset + hop_n * np.arange(b)) / CWRU_FS_HZ)


def load_cwru(root: Path | None = None, protocol: str = "faults-3class",
              window_seconds: float = 1.0, hop_seconds: float | None = None, *,
              verify_sha256: bool = False, progress: bool = False) -> Split:
    """Load the CWRU 12 kHz drive-end recordings as a windowed train/test split.

    Example:
        >>> load_cwru(protocol="paper-4class", window_seconds=1.0).test.counts()   # doctest: +SKIP
        {'healthy': 2, 'inner_race': 30, 'outer_race': 30, 'rolling_element': 30}
    """
    root = default_cwru_root() if root is None else Path(root)
    if not window_seconds >= 1 / CWRU_FS_HZ or (hop_seconds is not None and not hop_seconds > 0):
        raise ValueError(f"window_seconds={window_seconds} and hop_seconds={hop_seconds} "
                         "must be > 0, window >= 1 sample (hop_seconds=None: no overlap)")
    jobs, note = _protocol_jobs(_read_cwru_manifest(root), protocol)
    files = {row["file"]: row for _, row, _ in jobs}
    missing = [name for name in files if not (root / name).is_file()]
    if missing:
        raise DatasetMissingError(
            f"{len(missing)} CWRU file(s) listed in {root / 'MANIFEST.tsv'} are missing: "
            f"{', '.join(missing)}; copy them from the source named in the MANIFEST")
    for name in files if verify_sha256 else ():
        if _sha256(root / name) != files[name]["sha256"]:
            raise ValueError(f"{root / name}: sha256 differs from MANIFEST.tsv: the file is "
                             "corrupt or not the original; copy it again")
    window_n = int(round(window_seconds * CWRU_FS_HZ))
    hop_n = window_n if hop_seconds is None else max(1, int(round(hop_seconds * CWRU_FS_HZ)))
    parts: dict[str, list[WindowSet]] = {"train": [], "test": []}
    for side, row, time_split in _track(jobs, "reading CWRU", progress):
        parts[side].append(_window_recording(root, side, row, time_split, window_n, hop_n))
    sides = {side: concat(sets) for side, sets in parts.items() if sets}
    if any(len(sides.get(side, ())) == 0 for side in parts):
        raise ValueError(f"no windows on one side: MANIFEST.tsv needs recordings at 0-2 HP and at "
                         f"3 HP, each longer than window_seconds={window_seconds}")
    provenance = {"source": "cwru", "root": str(root), "protocol": protocol,
                  "window_seconds": window_seconds, "hop_seconds": hop_seconds,
                  "files": {name: row["sha256"] for name, row in files.items()}}
    return Split(train=sides["train"], test=sides["test"], name=f"cwru-{protocol}", note=note,
                 provenance=provenance)
