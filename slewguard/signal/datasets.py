"""Labelled window sets: the CWRU recordings, simulated slewing data, one on-disk format for both.

A ``Split`` holds a train and a test ``WindowSet``. CWRU is split by recording *before*
windowing, so no recording is on both sides (the one exception, Normal in "paper-4class", is a time
split and the note says so). Simulated windows each have their own seed; train and test seeds are
disjoint.

Example:
    >>> split = simulate_dataset(SimulatedDatasetSpec(windows_per_class=4), progress=False)
    >>> write(split, Path("/tmp/sim")); read(Path("/tmp/sim")).train.counts()
    {'healthy': 3, 'inner_race': 3, 'outer_race': 3, 'rolling_element': 3}
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from slewguard import __version__
from slewguard.signal.kinematics import presets

FAULT_CLASSES = ("healthy", "inner_race", "outer_race", "rolling_element", "cage", "combined")
CWRU_CLASSES = {"Normal": "healthy", "IR": "inner_race", "OR": "outer_race", "B": "rolling_element"}
CWRU_FS_HZ = 12000.0
CWRU_BEARING = "cwru-6205"
PROTOCOLS = ("faults-3class", "paper-4class")
FORMAT_NAME = "slewguard-dataset"
FORMAT_VERSION = 1
SPEED_PROFILES = ("constant", "oscillating", "stop_start")


class DatasetMissingError(FileNotFoundError, ValueError):
    """A dataset directory or file is missing (a ValueError too, so the CLI prints it cleanly)."""


@dataclass
class WindowSet:
    """Equal-length windows with one label each. Per-window arrays all have length B.

    ``bearing`` is a preset name, or "mixed" when windows come from several bearings (then
    ``meta["bearing"]`` names each window's preset; ``bearings()`` works in both cases).
    ``load_hp``/``fault_size_in``/``start_s`` are NaN where a source has no such notion.
    """

    windows: np.ndarray  # float32 (B, N)
    labels: np.ndarray  # str (B,)
    rpm: np.ndarray  # float64 (B,), mean |shaft speed|
    sample_rate_hz: float
    bearing: str
    recording: np.ndarray  # str (B,), source id
    rpm_trace: np.ndarray | None = None  # float32 (B, N) or None
    load_hp: np.ndarray | None = None  # float64 (B,)
    fault_size_in: np.ndarray | None = None  # float64 (B,)
    start_s: np.ndarray | None = None  # float64 (B,), window start within its recording
    meta: dict[str, np.ndarray] = field(default_factory=dict)  # source-specific (B,) columns

    def __post_init__(self) -> None:
        self.windows = np.asarray(self.windows, dtype=np.float32)
        if self.windows.ndim != 2:
            raise ValueError(f"windows must be 2-D (B, N), got shape {self.windows.shape}")
        n = len(self.windows)
        self.labels = np.asarray(self.labels, dtype=str)
        self.recording = np.asarray(self.recording, dtype=str)
        self.rpm = np.asarray(self.rpm, dtype=np.float64)
        for name in ("load_hp", "fault_size_in", "start_s"):
            value = getattr(self, name)
            value = np.full(n, np.nan) if value is None else np.asarray(value, dtype=np.float64)
            setattr(self, name, value)
        if self.rpm_trace is not None:
            self.rpm_trace = np.asarray(self.rpm_trace, dtype=np.float32)
            if self.rpm_trace.shape != self.windows.shape:
                raise ValueError(f"rpm_trace shape {self.rpm_trace.shape} != {self.windows.shape}")
        columns = {"labels": self.labels, "recording": self.recording, "rpm": self.rpm,
                   "load_hp": self.load_hp, "fault_size_in": self.fault_size_in,
                   "start_s": self.start_s, **{f"meta[{k}]": v for k, v in self.meta.items()}}
        for name, value in columns.items():
            if value.shape != (n,):
                raise ValueError(f"{name} has shape {value.shape}, expected ({n},): one per window")

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def window_seconds(self) -> float:
        return self.windows.shape[1] / self.sample_rate_hz

    def bearings(self) -> np.ndarray:
        """The bearing preset of every window, shape (B,)."""
        if "bearing" in self.meta:
            return np.asarray(self.meta["bearing"], dtype=str)
        return np.full(len(self), self.bearing)

    def counts(self) -> dict[str, int]:
        """Windows per class, classes in canonical order."""
        names, n = np.unique(self.labels, return_counts=True)
        found = dict(zip(names.tolist(), n.tolist(), strict=True))
        return {c: found[c] for c in sorted(found, key=_class_rank)}

    def subset(self, index: np.ndarray) -> WindowSet:
        """A new set with the windows picked by a boolean mask or integer index."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return replace(self, windows=self.windows[index], labels=self.labels[index],
                       rpm=self.rpm[index], recording=self.recording[index],
                       rpm_trace=pick(self.rpm_trace), load_hp=self.load_hp[index],
                       fault_size_in=self.fault_size_in[index], start_s=self.start_s[index],
                       meta={k: v[index] for k, v in self.meta.items()})


@dataclass
class Split:
    """A train and a test set from one source. ``note`` says what a number from it means."""

    train: WindowSet
    test: WindowSet
    name: str
    note: str
    provenance: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """Every class on either side, in canonical order."""
        found = set(self.train.labels.tolist()) | set(self.test.labels.tolist())
        return sorted(found, key=_class_rank)


def _class_rank(name: str) -> tuple[int, str]:
    return (FAULT_CLASSES.index(name) if name in FAULT_CLASSES else len(FAULT_CLASSES), name)


def concat(sets: Iterable[WindowSet]) -> WindowSet:
    """Stack window sets with the same sample rate, window length and bearing.

    Example:
        >>> len(concat([ws, ws])) == 2 * len(ws)
        True
    """
    sets = list(sets)
    if not sets:
        raise ValueError("concat needs at least one WindowSet")
    first = sets[0]
    shape = lambda ws: (ws.sample_rate_hz, ws.windows.shape[1])  # noqa: E731
    if any(shape(ws) != shape(first) for ws in sets):
        raise ValueError("cannot concatenate window sets with different sample rates or lengths")
    traces = [ws.rpm_trace for ws in sets]
    if any(t is None for t in traces) and not all(t is None for t in traces):
        traces = [np.broadcast_to(ws.rpm[:, None], ws.windows.shape) if t is None else t
                  for ws, t in zip(sets, traces, strict=True)]
    cat = lambda name: np.concatenate([getattr(ws, name) for ws in sets])  # noqa: E731
    bearing = first.bearing if all(ws.bearing == first.bearing for ws in sets) else "mixed"
    meta_keys = set.intersection(*(set(ws.meta) for ws in sets)) if sets else set()
    meta = {k: np.concatenate([ws.meta[k] for ws in sets]) for k in sorted(meta_keys)}
    if bearing == "mixed":
        meta["bearing"] = np.concatenate([ws.bearings() for ws in sets])
    return WindowSet(
        windows=cat("windows"), labels=cat("labels"), rpm=cat("rpm"),
        sample_rate_hz=first.sample_rate_hz, bearing=bearing, recording=cat("recording"),
        rpm_trace=None if traces[0] is None else np.concatenate(traces),
        load_hp=cat("load_hp"), fault_size_in=cat("fault_size_in"), start_s=cat("start_s"),
        meta=meta,
    )


def frame(x: np.ndarray, window_samples: int, hop_samples: int | None = None) -> np.ndarray:
    """Cut a 1-D signal into windows (B, window_samples); a short tail is dropped.

    Example:
        >>> frame(np.arange(10.0), 4, hop_samples=2).shape
        (4, 4)
    """
    hop = window_samples if hop_samples is None else hop_samples
    if window_samples < 1 or hop < 1:
        raise ValueError(f"window_samples={window_samples} and hop={hop} must be >= 1 sample")
    if len(x) < window_samples:
        return np.empty((0, window_samples), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(x, window_samples)[::hop]
    return np.ascontiguousarray(view, dtype=np.float32)


# --- CWRU --------------------------------------------------------------------------------------


def default_cwru_root() -> Path:
    """$SLEWGUARD_CWRU_DIR, else ``<repo>/../shared/data/cwru``."""
    env = os.environ.get("SLEWGUARD_CWRU_DIR")
    if env:
        return Path(env)
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cwru").resolve()


def read_cwru_manifest(root: Path) -> list[dict]:
    """The rows of ``MANIFEST.tsv`` with numeric columns converted.

    Example:
        >>> read_cwru_manifest(default_cwru_root())[0]["de_key"]
        'X097_DE_time'
    """
    manifest = Path(root) / "MANIFEST.tsv"
    if not Path(root).is_dir():
        raise DatasetMissingError(
            f"CWRU directory {root} does not exist: put the 12 kHz drive-end .mat files and "
            "MANIFEST.tsv there, or point SLEWGUARD_CWRU_DIR (or --root) at them"
        )
    if not manifest.is_file():
        raise DatasetMissingError(f"{manifest} is missing: the CWRU directory needs MANIFEST.tsv")
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for row in rows:
        for key in ("fault_size_in", "rpm", "fs_hz_actual"):
            row[key] = float(row[key])
        for key in ("load_hp", "n_samples", "cwru_file_no"):
            row[key] = int(row[key])
    return rows


def _check_files(root: Path, rows: list[dict], verify_sha256: bool) -> None:
    missing = [r["file"] for r in rows if not (root / r["file"]).is_file()]
    if missing:
        raise DatasetMissingError(
            f"{len(missing)} CWRU file(s) listed in {root / 'MANIFEST.tsv'} are missing: "
            f"{', '.join(missing)}; copy them from the source named in the MANIFEST"
        )
    for r in rows if verify_sha256 else []:
        digest = hashlib.sha256((root / r["file"]).read_bytes()).hexdigest()
        if digest != r["sha256"]:
            raise ValueError(f"{root / r['file']}: sha256 {digest} != MANIFEST {r['sha256']}: "
                             "the file is corrupt or not the original; copy it again")


def read_cwru_recording(root: Path, row: dict) -> tuple[np.ndarray, float]:
    """The drive-end signal of one MANIFEST row at 12 kHz (decimated if recorded faster), and rpm.

    Keys are picked by file number (``X<no>_DE_time``), so a file that carries another
    recording's variables too (the original 99.mat does) still gives the right one.

    Example:
        >>> x, rpm = read_cwru_recording(root, row)   # row["file"] == "12k_DE_Normal_0.mat"
        >>> len(x), rpm
        (60985, 1796.0)
    """
    from scipy.io import loadmat
    from scipy.signal import decimate

    path = Path(root) / row["file"]
    no = row["cwru_file_no"]
    if not re.fullmatch(rf"X0*{no}_DE_time", row["de_key"]):
        raise ValueError(f"{path}: de_key {row['de_key']!r} does not match file number {no}")
    data = loadmat(path)
    if row["de_key"] not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(f"{path}: no variable {row['de_key']!r} (found {found}); fix MANIFEST.tsv")
    x = np.asarray(data[row["de_key"]], dtype=np.float64).ravel()
    if len(x) != row["n_samples"]:
        raise ValueError(f"{path}: {len(x)} samples, MANIFEST says {row['n_samples']}")
    rpm_key = row["de_key"].replace("_DE_time", "RPM")
    rpm = float(np.ravel(data[rpm_key])[0]) if rpm_key in data else row["rpm"]
    if rpm != row["rpm"]:
        raise ValueError(f"{path}: {rpm_key}={rpm} but MANIFEST rpm={row['rpm']}: fix MANIFEST.tsv")
    factor = row["fs_hz_actual"] / CWRU_FS_HZ
    if factor != round(factor) or factor < 1:
        raise ValueError(f"{path}: fs_hz_actual={row['fs_hz_actual']} is not a multiple of 12 kHz")
    if factor > 1:  # Normal is recorded at 48 kHz: bring it to the fault files' rate
        x = decimate(x, int(factor))
    return x, rpm


def _protocol_jobs(rows: list[dict], protocol: str) -> tuple[list[tuple], str]:
    """(side, row, segment) per recording; segment = (from, to) fraction of a time-split one."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is unknown: choose one of {PROTOCOLS}")
    classes = ("IR", "B", "OR") if protocol == "faults-3class" else ("Normal", "IR", "B", "OR")
    used = [r for r in rows if r["class"] in classes]
    jobs = [("test" if r["load_hp"] == 3 else "train", r, None) for r in used]
    note = ("CWRU 12 kHz drive end, faults-3class: IR/B/OR pooled over 0.007/0.014/0.021 in; "
            "train on 0/1/2 HP recordings, test on 3 HP; no recording on both sides.")
    if protocol == "faults-3class":
        return jobs, note
    normal = [r for r in used if r["class"] == "Normal"]
    if not normal:
        raise DatasetMissingError("paper-4class needs 12k_DE_Normal_0.mat listed in MANIFEST.tsv")
    if any(r["load_hp"] == 3 for r in normal):  # the full paper set: Normal changes load too
        return jobs, note.replace("faults-3class: IR/B/OR", "paper-4class: Normal/IR/B/OR")
    return [j for j in jobs if j[1]["class"] != "Normal"] + [
        ("train", normal[0], (0.0, None)), ("test", normal[0], (None, 1.0))
    ], ("CWRU 12 kHz drive end, paper-4class: IR/B/OR pooled over sizes, train 0/1/2 HP, test "
        "3 HP; Normal is one 0 HP recording (48 kHz decimated by 4) split in time, first 60% "
        "train, last 40% test: Normal does NOT change load.")


def _window_recording(root: Path, side: str, row: dict, segment: tuple | None, window_n: int,
                      hop_n: int | None, normal_train_fraction: float) -> WindowSet:
    x, rpm = read_cwru_recording(root, row)
    offset = 0
    if segment is not None:  # one recording split in time before windowing
        cut = int(round(normal_train_fraction * len(x)))
        x, offset = (x[:cut], 0) if side == "train" else (x[cut:], cut)
    windows = frame(x, window_n, hop_n)
    b = len(windows)
    hop = window_n if hop_n is None else hop_n
    return WindowSet(
        windows=windows, labels=np.full(b, CWRU_CLASSES[row["class"]]), rpm=np.full(b, rpm),
        sample_rate_hz=CWRU_FS_HZ, bearing=CWRU_BEARING,
        recording=np.full(b, Path(row["file"]).stem), load_hp=np.full(b, row["load_hp"]),
        fault_size_in=np.full(b, row["fault_size_in"]),
        start_s=(offset + hop * np.arange(b)) / CWRU_FS_HZ,
    )


def load_cwru(root: Path | None = None, protocol: str = "faults-3class",
              window_seconds: float = 1.0, hop_seconds: float | None = None, *,
              verify_sha256: bool = False, normal_train_fraction: float = 0.6,
              progress: bool = False) -> Split:
    """Load the CWRU 12 kHz drive-end recordings as a windowed train/test split.

    Example:
        >>> split = load_cwru(protocol="paper-4class", window_seconds=1.0)
        >>> split.test.counts()
        {'healthy': 2, 'inner_race': 30, 'outer_race': 30, 'rolling_element': 30}
    """
    root = default_cwru_root() if root is None else Path(root)
    if not window_seconds > 0 or (hop_seconds is not None and not hop_seconds > 0):
        raise ValueError(f"window_seconds={window_seconds} and hop_seconds={hop_seconds} "
                         "must be > 0 (hop_seconds=None means no overlap)")
    if not 0 < normal_train_fraction < 1:
        raise ValueError(f"normal_train_fraction={normal_train_fraction} must be in (0, 1)")
    jobs, note = _protocol_jobs(read_cwru_manifest(root), protocol)
    files = {row["file"]: row for _, row, _ in jobs}
    _check_files(root, list(files.values()), verify_sha256)
    window_n = int(round(window_seconds * CWRU_FS_HZ))
    hop_n = None if hop_seconds is None else int(round(hop_seconds * CWRU_FS_HZ))
    parts: dict[str, list[WindowSet]] = {"train": [], "test": []}
    for side, row, segment in _track(jobs, "reading CWRU", progress):
        parts[side].append(
            _window_recording(root, side, row, segment, window_n, hop_n, normal_train_fraction))
    if not parts["train"] or not parts["test"]:
        raise ValueError(f"{root / 'MANIFEST.tsv'} has no recordings at 0-2 HP or none at 3 HP: "
                         "both sides of the load split need some")
    train, test = concat(parts["train"]), concat(parts["test"])
    for side, ws in (("train", train), ("test", test)):
        if len(ws) == 0:
            raise ValueError(f"window_seconds={window_seconds} leaves no {side} windows: "
                             "use shorter windows")
    provenance = {"source": "cwru", "root": str(root), "protocol": protocol,
                  "window_seconds": window_seconds, "hop_seconds": hop_seconds,
                  "normal_train_fraction": normal_train_fraction,
                  "files": {name: row["sha256"] for name, row in files.items()}}
    return Split(train=train, test=test, name=f"cwru-{protocol}", note=note, provenance=provenance)


def _track(items: list, description: str, progress: bool) -> Iterable:
    if not progress:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)


# --- simulated ---------------------------------------------------------------------------------


class SimulatedDatasetSpec(BaseModel):
    """A reproducible simulated data set: per window, class x bearing x speed x SNR x severity.

    Example:
        >>> SimulatedDatasetSpec(classes=("healthy", "outer_race"), rpm_min=2, rpm_max=4).rpm_max
        4.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    classes: tuple[str, ...] = Field(FAULT_CLASSES[:4], description=f"subset of {FAULT_CLASSES}")
    windows_per_class: int = Field(40, ge=2, description="windows per class, train + test")
    test_fraction: float = Field(0.25, gt=0, lt=1, description="share of each class in test")
    bearings: tuple[str, ...] = Field(("slew-4pc-1000",), description="bearing presets, drawn")
    rpm_min: float = Field(1.0, gt=0, description="lowest mean |shaft speed| in rpm")
    rpm_max: float = Field(12.0, gt=0, description="highest mean |shaft speed| in rpm")
    snr_db_min: float = Field(0.0, ge=-40, le=100, description="lowest SNR in dB")
    snr_db_max: float = Field(12.0, ge=-40, le=100, description="highest SNR in dB")
    severity_min: float = Field(0.5, gt=0, le=100, description="lowest impact amplitude scale")
    severity_max: float = Field(1.0, gt=0, le=100, description="highest impact amplitude scale")
    speed_profiles: tuple[str, ...] = Field(SPEED_PROFILES, description=f"from {SPEED_PROFILES}")
    sample_rate_hz: float = Field(5000.0, description="sample rate in Hz")
    window_seconds: float = Field(30.0, gt=0, description="window length in seconds")
    seed: int = Field(0, ge=0, description="one seed for the whole set")

    @model_validator(mode="after")
    def _consistent(self) -> SimulatedDatasetSpec:
        for name in ("rpm", "snr_db", "severity"):
            lo, hi = getattr(self, f"{name}_min"), getattr(self, f"{name}_max")
            if lo > hi:
                raise ValueError(f"{name}_min={lo} > {name}_max={hi}: swap them")
        for name, allowed in (("classes", FAULT_CLASSES), ("speed_profiles", SPEED_PROFILES),
                              ("bearings", tuple(presets()))):
            values = getattr(self, name)
            bad = [v for v in values if v not in allowed] or len(set(values)) != len(values)
            if not values or bad:
                raise ValueError(f"{name}={values}: give distinct values from {allowed}")
        from slewguard.signal.simulate import SimulationSpec

        for fault in self.classes:  # the slowest case must still be simulable
            for bearing in self.bearings:
                SimulationSpec(fault=fault, bearing=bearing, rpm=self.rpm_min,
                               sample_rate_hz=self.sample_rate_hz, snr_db=self.snr_db_min,
                               window_seconds=self.window_seconds, severity=self.severity_min)
        return self

    @property
    def n_test(self) -> int:
        """Test windows per class: at least one on each side."""
        n = self.windows_per_class
        return min(n - 1, max(1, int(round(self.test_fraction * n))))


def _draw_jobs(spec: SimulatedDatasetSpec) -> list[dict]:
    """Every window's parameters and seed; seeds are unique across the whole set."""
    rng = np.random.default_rng(spec.seed)
    total = len(spec.classes) * spec.windows_per_class
    seeds = rng.choice(2**31 - 1, size=total, replace=False)
    jobs = []
    for i, (fault, k) in enumerate((c, k) for c in spec.classes
                                   for k in range(spec.windows_per_class)):
        jobs.append({
            "side": "test" if k < spec.n_test else "train", "fault": fault,
            "seed": int(seeds[i]), "bearing": spec.bearings[rng.integers(len(spec.bearings))],
            "rpm": rng.uniform(spec.rpm_min, spec.rpm_max),
            "snr_db": rng.uniform(spec.snr_db_min, spec.snr_db_max),
            "severity": rng.uniform(spec.severity_min, spec.severity_max),
            "speed_profile": spec.speed_profiles[rng.integers(len(spec.speed_profiles))],
        })
    return jobs


def _simulated_side(spec: SimulatedDatasetSpec, jobs: list[dict], sims: list) -> WindowSet:
    traces = [s.rpm_trace[0] if s.rpm_trace is not None else None for s in sims]
    rpm = np.array([s.rpm[0] for s in sims])
    if all(t is None for t in traces):
        rpm_trace = None
    else:  # constant-speed windows get a flat trace so the batch has one
        rpm_trace = np.stack([np.full(spec_n, r, np.float32) if t is None else t
                              for t, r, spec_n in zip(traces, rpm, [len(sims[0].windows[0])]
                                                      * len(sims), strict=True)])
    column = lambda key: np.array([j[key] for j in jobs])  # noqa: E731
    mixed = len(spec.bearings) > 1
    meta = {k: column(k) for k in ("seed", "snr_db", "severity", "speed_profile")}
    if mixed:
        meta["bearing"] = column("bearing")
    return WindowSet(
        windows=np.concatenate([s.windows for s in sims]), labels=column("fault"), rpm=rpm,
        sample_rate_hz=spec.sample_rate_hz, bearing="mixed" if mixed else spec.bearings[0],
        recording=np.array([f"sim-{j['seed']}" for j in jobs]), rpm_trace=rpm_trace, meta=meta,
    )


def simulate_dataset(spec: SimulatedDatasetSpec, progress: bool = True) -> Split:
    """Simulate a train/test split; the same spec gives identical arrays.

    Example:
        >>> split = simulate_dataset(SimulatedDatasetSpec(windows_per_class=8), progress=False)
        >>> split.test.counts()["healthy"]
        2
    """
    from slewguard.signal.simulate import SimulationSpec, simulate

    jobs = _draw_jobs(spec)
    sims = []
    for job in _track(jobs, "simulating windows", progress):
        params = {k: v for k, v in job.items() if k not in ("side", "seed")}
        sim_spec = SimulationSpec(**params, sample_rate_hz=spec.sample_rate_hz,
                                  window_seconds=spec.window_seconds)
        sims.append(simulate(sim_spec, n_windows=1, seed=job["seed"]))
    sides = {}
    for side in ("train", "test"):
        pick = [i for i, j in enumerate(jobs) if j["side"] == side]
        sides[side] = _simulated_side(spec, [jobs[i] for i in pick], [sims[i] for i in pick])
    note = (f"Simulated slewing-bearing windows: {', '.join(spec.classes)}; "
            f"{', '.join(spec.bearings)}; {spec.rpm_min:g}-{spec.rpm_max:g} rpm; SNR "
            f"{spec.snr_db_min:g}-{spec.snr_db_max:g} dB; train/test windows have disjoint seeds.")
    provenance = {"source": "simulated", "spec": spec.model_dump(mode="json"),
                  "slewguard_version": __version__}
    return Split(train=sides["train"], test=sides["test"], name="simulated", note=note,
                 provenance=provenance)


# --- on disk -----------------------------------------------------------------------------------

_COLUMNS = ("windows", "labels", "rpm", "recording", "load_hp", "fault_size_in", "start_s")


def write(split: Split, path: Path) -> None:
    """Write a split as ``<path>/{train,test}.npz`` plus ``manifest.json`` (written last).

    Example:
        >>> write(load_cwru(protocol="faults-3class"), Path("out/cwru-3"))
    """
    path = Path(path)
    if path.is_dir() and any(path.iterdir()) and not (path / "manifest.json").is_file():
        raise ValueError(f"{path} is not empty and holds no slewguard dataset: give a new one")
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").unlink(missing_ok=True)  # none while the arrays are half written
    sides = {}
    for side in ("train", "test"):
        ws: WindowSet = getattr(split, side)
        arrays = {name: getattr(ws, name) for name in _COLUMNS}
        arrays |= {f"meta__{k}": v for k, v in ws.meta.items()}
        if ws.rpm_trace is not None:
            arrays["rpm_trace"] = ws.rpm_trace
        np.savez(path / f"{side}.npz", **arrays)
        sides[side] = {"file": f"{side}.npz", "sha256": _sha256(path / f"{side}.npz"),
                       "n_windows": len(ws), "window_samples": ws.windows.shape[1],
                       "sample_rate_hz": ws.sample_rate_hz, "bearing": ws.bearing,
                       "counts": ws.counts()}
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": split.name,
                "note": split.note, "provenance": split.provenance, "sides": sides,
                "written_by": f"slewguard {__version__}"}
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(path: Path) -> dict:
    """The checked ``manifest.json`` of a data set directory (format and version)."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise DatasetMissingError(
            f"{path} holds no manifest.json: make a data set with `slewguard dataset simulate "
            "--out DIR` or `slewguard dataset cwru --out DIR`")
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path / 'manifest.json'}: format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}, this slewguard reads {FORMAT_NAME!r} version "
            f"{FORMAT_VERSION}: regenerate the data set with `slewguard dataset ...`")
    return manifest


def read(path: Path, verify: bool = True) -> Split:
    """Read a split written by ``write`` (CWRU or simulated alike); checks format and sha256.

    Example:
        >>> read(Path("out/cwru-3")).name
        'cwru-faults-3class'
    """
    path = Path(path)
    manifest = read_manifest(path)
    sides = {}
    for side, info in manifest["sides"].items():
        file = path / info["file"]
        if verify and _sha256(file) != info["sha256"]:
            raise ValueError(f"{file} does not match its sha256 in manifest.json: write it again")
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = {k.removeprefix("meta__"): arrays.pop(k) for k in list(arrays) if "__" in k}
        sides[side] = WindowSet(**arrays, meta=meta, sample_rate_hz=info["sample_rate_hz"],
                                bearing=info["bearing"])
    return Split(train=sides["train"], test=sides["test"], name=manifest["name"],
                 note=manifest["note"], provenance=manifest["provenance"])


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with Path(file).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- to text -----------------------------------------------------------------------------------


def to_texts(ws: WindowSet, progress: bool = True, batch_size: int = 64) -> list[str]:
    """One feature text per window (features.extract + textify), batched per bearing.

    Example:
        >>> to_texts(read(Path("out/cwru-3")).test, progress=False)[0][:40]
    """
    from slewguard.signal.features import extract
    from slewguard.signal.kinematics import preset
    from slewguard.signal.textify import textify_table

    texts: list[str | None] = [None] * len(ws)
    bearings = ws.bearings()
    groups = [np.flatnonzero(bearings == name) for name in np.unique(bearings)]
    batches = [idx[i:i + batch_size] for idx in groups for i in range(0, len(idx), batch_size)]
    for idx in _track(batches, "features -> text", progress):
        trace = None if ws.rpm_trace is None else ws.rpm_trace[idx]
        table = extract(ws.windows[idx], ws.sample_rate_hz, preset(str(bearings[idx[0]])),
                        rpm=ws.rpm[idx], rpm_trace=trace)
        for i, text in zip(idx, textify_table(table), strict=True):
            texts[i] = text
    return texts
