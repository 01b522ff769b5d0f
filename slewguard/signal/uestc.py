"""The UESTC bearing recordings (a second real rig) as a windowed train/test ``Split``.

48 files ``<N|I|O|B>_<rpm>_<part>.mat`` (Normal/IR/OR/B, nominal 800-1400 rpm, 20 kHz),
listed in ``MANIFEST.tsv`` beside them. The parts of one condition (class x speed) are one
continuous recording, so the recording id is the condition and a condition is never on both sides.
Speeds are nominal only (the true speed is -3 % to +6 % off): windows carry the nominal rpm and
``meta["rpm_source"] = "nominal"``; estimate the speed from the signal (``evidence``).

Protocols: "speed-<rpm>" trains on the other three speeds and tests on that one (e.g.
"speed-1400"); ``load_uestc_all`` gives every condition as one set, for use as a held-out rig.

Example:
    >>> load_uestc(protocol="speed-1400").test.counts()   # doctest: +SKIP
    {'healthy': 18, 'inner_race': 18, 'outer_race': 18, 'rolling_element': 18}
"""

from __future__ import annotations

import csv
import os
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

# MANIFEST class -> label (file names use the first letter: N/I/O/B)
UESTC_CLASSES = {"Normal": "healthy", "IR": "inner_race", "OR": "outer_race",
                 "B": "rolling_element"}
UESTC_FS_HZ, UESTC_BEARING = 20000.0, "uestc-uc204"
UESTC_SPEEDS = (800, 1000, 1200, 1400)
PROTOCOLS = tuple(f"speed-{rpm}" for rpm in UESTC_SPEEDS)


def default_uestc_root() -> Path:
    """$SLEWGUARD_UESTC_DIR, else ``<repo>/../shared/data/uestc``."""
    env = os.environ.get("SLEWGUARD_UESTC_DIR")
    repo = Path(__file__).resolve().parents[2]
    return Path(env) if env else (repo / ".." / "shared" / "data" / "uestc").resolve()


def read_uestc_manifest(root: Path) -> list[dict]:
    """The rows of ``<root>/MANIFEST.tsv`` (file, class, nominal_rpm, part, fs_hz, n_samples,
    sha256, ...), numbers converted."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetMissingError(
            f"UESTC directory {root} does not exist: put the .mat files and MANIFEST.tsv there, "
            "or point SLEWGUARD_UESTC_DIR (or --root) at them")
    manifest = root / "MANIFEST.tsv"
    if not manifest.is_file():
        raise DatasetMissingError(f"{manifest} is missing: the UESTC directory needs MANIFEST.tsv")
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for row in rows:
        if row["class"] not in UESTC_CLASSES:
            raise ValueError(f"{manifest}: class {row['class']!r} of {row['file']} is not one of "
                             f"{sorted(UESTC_CLASSES)}; fix MANIFEST.tsv")
        row.update({k: int(float(row[k])) for k in ("nominal_rpm", "part", "n_samples")})
        row["fs_hz"] = float(row["fs_hz"])
    return rows


def condition(row: dict) -> str:
    """Recording id of a row: its condition, e.g. ``uestc-O_1000`` (parts merged)."""
    return f"uestc-{row['class'][0].upper()}_{row['nominal_rpm']}"


def read_uestc_file(root: Path, row: dict) -> np.ndarray:
    """One file's signal (variable ``Data``), checked against the MANIFEST.

    Example:
        >>> read_uestc_file(root, row).shape   # row["file"] == "N_800_1.mat"   # doctest: +SKIP
        (262144,)
    """
    from scipy.io import loadmat

    path = Path(root) / row["file"]
    data = loadmat(path)
    if "Data" not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(f"{path}: no variable 'Data' (found {found}); is it a UESTC file?")
    x = np.asarray(data["Data"], dtype=np.float64).ravel()
    fs = float(np.ravel(data.get("SampleFrequency", [row["fs_hz"]]))[0])
    if fs != UESTC_FS_HZ or row["fs_hz"] != UESTC_FS_HZ:
        raise ValueError(f"{path}: SampleFrequency={fs:g} (MANIFEST {row['fs_hz']:g}), expected "
                         f"{UESTC_FS_HZ:g}; fix MANIFEST.tsv")
    if len(x) != row["n_samples"]:
        raise ValueError(f"{path}: {len(x)} samples, MANIFEST.tsv says {row['n_samples']}")
    return x


def _window_file(root: Path, row: dict, window_n: int, hop_n: int) -> WindowSet:
    windows = _frame(read_uestc_file(root, row), window_n, hop_n)  # per part: no storage cut
    b = len(windows)
    return WindowSet(
        windows=windows, labels=np.full(b, UESTC_CLASSES[row["class"]]),
        rpm=np.full(b, float(row["nominal_rpm"])), sample_rate_hz=UESTC_FS_HZ,
        bearing=UESTC_BEARING, recording=np.full(b, condition(row)), load_hp=np.zeros(b),
        start_s=hop_n * np.arange(b) / UESTC_FS_HZ,
        meta={"rpm_source": np.full(b, "nominal"), "part": np.full(b, str(row["part"]))})


def _rows(root: Path, verify_sha256: bool) -> list[dict]:
    rows = read_uestc_manifest(root)
    missing = [r["file"] for r in rows if not (root / r["file"]).is_file()]
    if missing:
        raise DatasetMissingError(
            f"{len(missing)} UESTC file(s) listed in {root / 'MANIFEST.tsv'} are missing: "
            f"{', '.join(missing)}; copy them from the source named in the MANIFEST")
    for row in rows if verify_sha256 else ():
        if _sha256(root / row["file"]) != row["sha256"]:
            raise ValueError(f"{root / row['file']}: sha256 differs from MANIFEST.tsv: the file "
                             "is corrupt or not the original; copy it again")
    return rows


def _windows(window_seconds: float, hop_seconds: float | None) -> tuple[int, int]:
    if not window_seconds >= 1 / UESTC_FS_HZ or (hop_seconds is not None and not hop_seconds > 0):
        raise ValueError(f"window_seconds={window_seconds} and hop_seconds={hop_seconds} "
                         "must be > 0, window >= 1 sample (hop_seconds=None: no overlap)")
    window_n = int(round(window_seconds * UESTC_FS_HZ))
    return window_n, window_n if hop_seconds is None else max(1, round(hop_seconds * UESTC_FS_HZ))


def load_uestc_all(root: Path | None = None, window_seconds: float = 2.0,
                   hop_seconds: float | None = None, *, verify_sha256: bool = False,
                   progress: bool = False) -> WindowSet:
    """Every UESTC condition as one window set: the rig held out whole.

    Example:
        >>> load_uestc_all().counts()   # doctest: +SKIP
        {'healthy': 72, 'inner_race': 72, 'outer_race': 72, 'rolling_element': 72}
    """
    root = default_uestc_root() if root is None else Path(root)
    window_n, hop_n = _windows(window_seconds, hop_seconds)
    rows = _rows(root, verify_sha256)
    return concat([_window_file(root, r, window_n, hop_n)
                   for r in _track(rows, "reading UESTC", progress)])


def load_uestc(root: Path | None = None, protocol: str = "speed-1400",
               window_seconds: float = 2.0, hop_seconds: float | None = None, *,
               verify_sha256: bool = False, progress: bool = False) -> Split:
    """UESTC as a train/test split by nominal speed: test on the protocol's speed.

    Example:
        >>> sorted(set(load_uestc(protocol="speed-800").test.rpm))   # doctest: +SKIP
        [800.0]
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is unknown: choose one of {PROTOCOLS}")
    root = default_uestc_root() if root is None else Path(root)
    test_rpm = float(protocol.removeprefix("speed-"))
    ws = load_uestc_all(root, window_seconds, hop_seconds, verify_sha256=verify_sha256,
                        progress=progress)
    test = ws.rpm == test_rpm
    if not test.any() or test.all():
        raise ValueError(f"no windows on one side: {protocol} needs recordings at {test_rpm:g} "
                         "rpm and at another speed, each longer than window_seconds")
    note = (f"UESTC 20 kHz, UC204 insert, {protocol}: N/I/O/B, train on the other nominal "
            f"speeds, test on {test_rpm:g} rpm; speeds are nominal (-3 % to +6 % off); no "
            "condition on both sides.")
    provenance = {"source": "uestc", "root": str(root), "protocol": protocol,
                  "window_seconds": window_seconds, "hop_seconds": hop_seconds,
                  "files": {r["file"]: r["sha256"] for r in read_uestc_manifest(root)}}
    return Split(train=ws.subset(~test), test=ws.subset(test), name=f"uestc-{protocol}",
                 note=note, provenance=provenance)
