"""Labelled window sets: simulated slewing data, and one on-disk format for it and CWRU's.

A ``Split`` holds a train and a test ``WindowSet`` (``cwru.load_cwru`` makes one from the CWRU
recordings). Every simulated window has its own seed; no seed is on both sides.
``write``/``read``: one directory format for both (train.npz, test.npz, manifest.json).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from slewguard import __version__
from slewguard.signal.kinematics import preset, presets

FAULT_CLASSES = ("healthy", "inner_race", "outer_race", "rolling_element", "cage", "combined")
FORMAT_NAME, FORMAT_VERSION = "slewguard-dataset", 1
SPEED_PROFILES = ("constant", "oscillating", "stop_start")
# Per-window (B,) columns of a WindowSet besides windows, rpm_trace and meta.
PER_WINDOW = ("labels", "rpm", "recording", "load_hp", "fault_size_in", "start_s")


class DatasetMissingError(FileNotFoundError, ValueError):
    """A data set directory or file is missing (a ValueError too: the CLI prints it cleanly)."""


@dataclass
class WindowSet:
    """Equal-length windows with one label each; every per-window array has length B.

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
    rpm_trace: np.ndarray | None = None  # float32 (B, N) signed rpm, or None
    load_hp: np.ndarray | None = None  # float64 (B,)
    fault_size_in: np.ndarray | None = None  # float64 (B,)
    start_s: np.ndarray | None = None  # float64 (B,), window start within its recording
    meta: dict[str, np.ndarray] = field(default_factory=dict)  # source-specific (B,) columns

    def __post_init__(self) -> None:
        self.windows = np.asarray(self.windows, dtype=np.float32)
        if self.windows.ndim != 2:
            raise ValueError(f"windows must be 2-D (B, N), got shape {self.windows.shape}")
        n = len(self.windows)
        for name in PER_WINDOW:
            value = getattr(self, name)
            kind = str if name in ("labels", "recording") else np.float64
            setattr(self, name, np.full(n, np.nan) if value is None else np.asarray(value, kind))
        if self.rpm_trace is not None:
            self.rpm_trace = np.asarray(self.rpm_trace, dtype=np.float32)
            if self.rpm_trace.shape != self.windows.shape:
                raise ValueError(f"rpm_trace shape {self.rpm_trace.shape} != {self.windows.shape}")
        for name, value in {**{c: getattr(self, c) for c in PER_WINDOW}, **self.meta}.items():
            if np.shape(value) != (n,):
                raise ValueError(f"{name} has shape {np.shape(value)}, expected ({n},)")

    def __len__(self) -> int:
        return len(self.windows)

    def bearings(self) -> np.ndarray:
        """The bearing preset of every window, shape (B,)."""
        return np.asarray(self.meta.get("bearing", np.full(len(self), self.bearing)), dtype=str)

    def counts(self) -> dict[str, int]:
        """Windows per class, classes in canonical order."""
        names, n = np.unique(self.labels, return_counts=True)
        found = dict(zip(names.tolist(), n.tolist(), strict=True))
        return {name: found[name] for name in sort_classes(found)}

    def subset(self, index: np.ndarray) -> WindowSet:
        """A new set with the windows picked by a boolean mask or integer index."""
        return replace(self, windows=self.windows[index],
                       rpm_trace=None if self.rpm_trace is None else self.rpm_trace[index],
                       meta={k: v[index] for k, v in self.meta.items()},
                       **{c: getattr(self, c)[index] for c in PER_WINDOW})


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
        return sort_classes(set(self.train.labels.tolist()) | set(self.test.labels.tolist()))


def sort_classes(names: Iterable[str]) -> list[str]:
    """Class names in FAULT_CLASSES order, unknown ones last (alphabetical)."""
    rank = {c: i for i, c in enumerate(FAULT_CLASSES)}
    return sorted(names, key=lambda c: (rank.get(c, len(rank)), c))


def concat(sets: list[WindowSet]) -> WindowSet:
    """Stack window sets of one sample rate and window length (meta: the keys all share).

    Example:
        >>> spec = SimulatedDatasetSpec(classes=("healthy", "outer_race"), windows_per_class=2)
        >>> ws = simulate_dataset(spec, progress=False).test
        >>> len(concat([ws, ws])) == 2 * len(ws)
        True
    """
    first = sets[0]
    if len({(ws.sample_rate_hz, ws.windows.shape[1]) for ws in sets}) > 1:
        raise ValueError("cannot concatenate window sets with different sample rates or lengths")
    traces = None
    if any(ws.rpm_trace is not None for ws in sets):  # constant speed becomes a flat trace
        traces = np.concatenate([np.broadcast_to(ws.rpm[:, None], ws.windows.shape)
                                 if ws.rpm_trace is None else ws.rpm_trace for ws in sets])
    bearing = first.bearing if len({ws.bearing for ws in sets}) == 1 else "mixed"
    keys = set.intersection(*(set(ws.meta) for ws in sets)) | (
        {"bearing"} if bearing == "mixed" else set())
    return WindowSet(
        windows=np.concatenate([ws.windows for ws in sets]), bearing=bearing,
        sample_rate_hz=first.sample_rate_hz, rpm_trace=traces,
        meta={k: np.concatenate([ws.bearings() if k == "bearing" else ws.meta[k] for ws in sets])
              for k in sorted(keys)},
        **{c: np.concatenate([getattr(ws, c) for ws in sets]) for c in PER_WINDOW},
    )


def _frame(x: np.ndarray, window_samples: int, hop: int) -> np.ndarray:
    """Float32 windows (B, window_samples) every ``hop`` samples; a short tail is dropped."""
    if len(x) < window_samples:
        return np.empty((0, window_samples), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(x, window_samples)[::hop]  # (B, N) view
    return np.ascontiguousarray(view, dtype=np.float32)


def _track(items: list, description: str, progress: bool) -> list:
    """``items``, with a progress bar on stderr when ``progress`` and stderr is a terminal."""
    from rich.console import Console
    from rich.progress import track

    console = Console(stderr=True)
    if not (progress and console.is_terminal):  # a log file gets no bar redraws
        return items
    return track(items, description=description, transient=True, console=console)


class SimulatedDatasetSpec(BaseModel):
    """A reproducible simulated data set: per window, class x bearing x speed x SNR x severity.

    Example:
        >>> SimulatedDatasetSpec(classes=("healthy", "outer_race"), rpm_min=2, rpm_max=4).rpm_max
        4.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    classes: tuple[str, ...] = Field(FAULT_CLASSES[:4], description=f"subset of {FAULT_CLASSES}")
    windows_per_class: int = Field(100, ge=2, description="windows per class, train + test")
    test_fraction: float = Field(0.25, gt=0, lt=1, description="share of each class in test")
    bearings: tuple[str, ...] = Field(("slew-4pc-1000",), description="bearing presets, drawn")
    rpm_min: float = Field(1.0, gt=0, description="lowest mean |shaft speed| in rpm")
    rpm_max: float = Field(12.0, gt=0, description="highest mean |shaft speed| in rpm")
    snr_db_min: float = Field(0.0, ge=-40, le=100, description="lowest SNR in dB")
    snr_db_max: float = Field(12.0, ge=-40, le=100, description="highest SNR in dB")
    severity_min: float = Field(0.5, gt=0, le=100, description="lowest impact amplitude scale")
    severity_max: float = Field(1.0, gt=0, le=100, description="highest impact amplitude scale")
    speed_profiles: tuple[str, ...] = Field(SPEED_PROFILES, description=f"from {SPEED_PROFILES}")
    sample_rate_hz: float = Field(5000.0, description="sample rate in Hz (1 kHz to 50 kHz)")
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
            if not values or set(values) - set(allowed) or len(set(values)) != len(values):
                raise ValueError(f"{name}={values}: give distinct values from {allowed}")
        from slewguard.signal.scenario import SimulationSpec

        for fault in self.classes:  # the slowest, weakest case must still be simulable
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
    pairs = [(c, k) for c in spec.classes for k in range(spec.windows_per_class)]
    seeds = rng.choice(2**31 - 1, size=len(pairs), replace=False)
    return [{
        "side": "test" if k < spec.n_test else "train", "fault": fault, "seed": int(seed),
        "bearing": spec.bearings[rng.integers(len(spec.bearings))],
        "rpm": rng.uniform(spec.rpm_min, spec.rpm_max),
        "snr_db": rng.uniform(spec.snr_db_min, spec.snr_db_max),
        "severity": rng.uniform(spec.severity_min, spec.severity_max),
        "speed_profile": spec.speed_profiles[rng.integers(len(spec.speed_profiles))],
    } for (fault, k), seed in zip(pairs, seeds, strict=True)]


def _simulate_window(spec: SimulatedDatasetSpec, job: dict) -> WindowSet:
    from slewguard.signal.scenario import SimulationSpec
    from slewguard.signal.simulate import simulate

    params = {k: v for k, v in job.items() if k not in ("side", "seed")}
    sim_spec = SimulationSpec(**params, sample_rate_hz=spec.sample_rate_hz,
                              window_seconds=spec.window_seconds)
    sim = simulate(sim_spec, n_windows=1, seed=job["seed"])
    meta = {k: np.array([job[k]]) for k in ("seed", "snr_db", "severity", "speed_profile")}
    return WindowSet(windows=sim.windows, labels=[job["fault"]], rpm=sim.rpm,
                     sample_rate_hz=spec.sample_rate_hz, bearing=job["bearing"],
                     recording=[f"sim-{job['seed']}"], rpm_trace=sim.rpm_trace, meta=meta)


def simulate_dataset(spec: SimulatedDatasetSpec, progress: bool = True) -> Split:
    """Simulate a train/test split; the same spec gives identical arrays.

    Example:
        >>> split = simulate_dataset(SimulatedDatasetSpec(windows_per_class=8), progress=False)
        >>> split.test.counts()["healthy"]
        2
    """
    jobs = _draw_jobs(spec)
    windows = [_simulate_window(spec, job) for job in _track(jobs, "simulating", progress)]
    sides = {side: concat([w for w, j in zip(windows, jobs, strict=True) if j["side"] == side])
             for side in ("train", "test")}
    note = (f"Simulated slewing-bearing windows: {', '.join(spec.classes)}; "
            f"{', '.join(spec.bearings)}; {spec.rpm_min:g}-{spec.rpm_max:g} rpm; SNR "
            f"{spec.snr_db_min:g}-{spec.snr_db_max:g} dB; no seed on both sides.")
    provenance = {"source": "simulated", "spec": spec.model_dump(mode="json"),
                  "slewguard_version": __version__}
    return Split(train=sides["train"], test=sides["test"], name="simulated", note=note,
                 provenance=provenance)


def write(split: Split, path: Path) -> None:
    """Write a split as ``<path>/{train,test}.npz`` plus ``manifest.json`` (written last).

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> spec = SimulatedDatasetSpec(classes=("healthy", "outer_race"), windows_per_class=2)
        >>> write(simulate_dataset(spec, progress=False), Path(tmp.name) / "sim")
        >>> sorted(file.name for file in (Path(tmp.name) / "sim").iterdir())
        ['manifest.json', 'test.npz', 'train.npz']
    """
    path = Path(path)
    if path.is_dir() and any(path.iterdir()) and not (path / "manifest.json").is_file():
        raise ValueError(f"{path} is not empty and holds no slewguard data set: give a new one")
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").unlink(missing_ok=True)  # none while the arrays are half written
    sides = {}
    for side in ("train", "test"):
        ws: WindowSet = getattr(split, side)
        arrays = {"windows": ws.windows, **{c: getattr(ws, c) for c in PER_WINDOW},
                  **{f"meta__{k}": v for k, v in ws.meta.items()}}
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
    """The ``manifest.json`` of a data set directory, its format and version checked.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> spec = SimulatedDatasetSpec(classes=("healthy", "outer_race"), windows_per_class=2)
        >>> write(simulate_dataset(spec, progress=False), Path(tmp.name) / "sim")
        >>> read_manifest(Path(tmp.name) / "sim")["sides"]["test"]["counts"]
        {'healthy': 1, 'outer_race': 1}
    """
    file = Path(path) / "manifest.json"
    if not file.is_file():
        raise DatasetMissingError(
            f"{path} holds no manifest.json: make a data set with `slewguard dataset simulate "
            "--out DIR` or `slewguard dataset cwru --out DIR`")
    manifest = json.loads(file.read_text())
    found = (manifest.get("format"), manifest.get("format_version"))
    if found != (FORMAT_NAME, FORMAT_VERSION):
        raise ValueError(f"{file}: format {found[0]!r} version {found[1]!r}, but this slewguard "
                         f"reads {FORMAT_NAME!r} version {FORMAT_VERSION}: regenerate it with "
                         "`slewguard dataset simulate` or `slewguard dataset cwru`")
    return manifest


def read(path: Path, verify: bool = True) -> Split:
    """Read a split written by ``write`` (CWRU or simulated alike); checks format and sha256.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> spec = SimulatedDatasetSpec(classes=("healthy", "outer_race"), windows_per_class=2)
        >>> write(simulate_dataset(spec, progress=False), Path(tmp.name) / "sim")
        >>> read(Path(tmp.name) / "sim").name
        'simulated'
    """
    manifest = read_manifest(path)
    sides = {}
    for side, info in manifest["sides"].items():
        file = Path(path) / info["file"]
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
    with Path(file).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def to_texts(ws: WindowSet, progress: bool = True, batch_size: int = 1,
             method: str = "tree") -> list[str]:
    """One feature text per window (features.extract + textify), in batches per bearing.

    ``method`` is extract's band search (features.METHODS); a model's card names its own.

    extract() sets its bands and order axis from the whole batch, so one window per call (the
    default) gives the text the daemon computes per window; batching measured no faster.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> spec = SimulatedDatasetSpec(classes=("healthy", "outer_race"), windows_per_class=2)
        >>> write(simulate_dataset(spec, progress=False), Path(tmp.name) / "sim")
        >>> texts = to_texts(read(Path(tmp.name) / "sim").test, progress=False)
        >>> [text.split()[0] for text in texts]
        ['outer', 'outer']
    """
    from slewguard.signal.features import extract
    from slewguard.signal.textify import textify_table

    texts, bearings = [""] * len(ws), ws.bearings()
    groups = [np.flatnonzero(bearings == name) for name in np.unique(bearings)]
    batches = [idx[i:i + batch_size] for idx in groups for i in range(0, len(idx), batch_size)]
    for idx in _track(batches, "features -> text", progress):
        trace = None if ws.rpm_trace is None else ws.rpm_trace[idx]
        table = extract(ws.windows[idx], ws.sample_rate_hz, preset(str(bearings[idx[0]])),
                        rpm=ws.rpm[idx], rpm_trace=trace, method=method)
        for i, text in zip(idx, textify_table(table), strict=True):
            texts[i] = text
    return texts
