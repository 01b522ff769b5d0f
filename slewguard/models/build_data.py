"""The data of the default-model build: simulated and CWRU windows, held-out split, texts.

``build_data(config, log)`` simulates the slewing-bearing training set and the demo fleet, adds
the CWRU recordings when present, holds out a stratified share of training for validation,
temperature and OOD, and turns every window into its textify text, keeping the features.

Example:
    >>> from slewguard.models.build_config import BuildConfig
    >>> data = build_data(BuildConfig.for_mode(quick=True), print)   # doctest: +SKIP
    >>> len(data.train.texts) == len(data.train.labels)              # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from slewguard.models.build_config import BuildConfig

SIM_BEARINGS = ("slew-4pc-1000", "slew-xr-1000", "pitch-4pc-2200")


@dataclass
class Texts:
    """One labelled split as the model sees it: texts, labels and the features behind them."""

    name: str
    texts: list[str]
    labels: list[str]
    features: np.ndarray  # float32 (B, F), features.FEATURE_NAMES order
    note: str = ""

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class BuildData:
    """Training, held-out and test splits plus the provenance lines for the card."""

    train: Texts
    calib: Texts
    tests: list[Texts]
    sources: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    feature_names: tuple[str, ...] = ()  # the columns of Texts.features; () for FEATURE_NAMES


def featurize(ws: Any, name: str, progress: bool = True, method: str = "tree") -> Texts:
    """Features and texts of a datasets.WindowSet, one window per extract call (as the daemon).

    Same texts as ``datasets.to_texts(ws, method=method)``; the features are kept for the OOD
    detector.

    Example:
        >>> featurize(split.test, "test-sim").texts[0].split()[0]   # doctest: +SKIP
        'outer'
    """
    from slewguard.signal.datasets import _track
    from slewguard.signal.features import FEATURE_NAMES, FeatureTable, extract
    from slewguard.signal.kinematics import preset
    from slewguard.signal.textify import textify_table

    values = np.zeros((len(ws), len(FEATURE_NAMES)), dtype=np.float32)
    bearings = ws.bearings()
    for i in _track(list(range(len(ws))), f"features -> text ({name})", progress):
        trace = None if ws.rpm_trace is None else ws.rpm_trace[i:i + 1]
        values[i] = extract(ws.windows[i:i + 1], ws.sample_rate_hz, preset(str(bearings[i])),
                            rpm=ws.rpm[i:i + 1], rpm_trace=trace, method=method).values[0]
    texts = textify_table(FeatureTable(FEATURE_NAMES, values))
    return Texts(name, texts, ws.labels.tolist(), values)


def concat_texts(name: str, parts: list[Texts]) -> Texts:
    """Stack labelled splits (texts of different sample rates / bearings mix freely)."""
    return Texts(name, [t for p in parts for t in p.texts], [y for p in parts for y in p.labels],
                 np.concatenate([p.features for p in parts]))


def holdout(ws: Any, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train / held-out window indices (at least one held-out window per class)."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for name in np.unique(ws.labels):
        idx = rng.permutation(np.flatnonzero(ws.labels == name))
        n = max(1, int(round(fraction * len(idx))))
        held.append(idx[:n])
        keep.append(idx[n:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def simulated_splits(config: BuildConfig) -> tuple[Any, Any]:
    """The simulated training split and the demo-fleet test set (6 rpm, 0 dB, severity 2)."""
    from slewguard.signal.datasets import SimulatedDatasetSpec, simulate_dataset

    common = dict(classes=config.classes, sample_rate_hz=config.sample_rate_hz,
                  window_seconds=config.window_seconds)
    spec = SimulatedDatasetSpec(
        **common, windows_per_class=config.windows_per_class, bearings=SIM_BEARINGS,
        rpm_min=1.0, rpm_max=12.0, snr_db_min=config.snr_db[0], snr_db_max=config.snr_db[1],
        severity_min=config.severity[0], severity_max=config.severity[1],
        speed_profiles=("constant", "oscillating"), seed=config.seed)
    fleet = SimulatedDatasetSpec(
        **common, windows_per_class=config.fleet_windows_per_class + 1, test_fraction=0.9,
        bearings=("slew-4pc-1000",), rpm_min=6.0, rpm_max=6.0, snr_db_min=0.0, snr_db_max=0.0,
        severity_min=2.0, severity_max=2.0, speed_profiles=("constant",),
        seed=config.seed + 1_000_003)  # another seed stream: no window shared with training
    progress = config.show_progress
    return simulate_dataset(spec, progress=progress), simulate_dataset(fleet, progress=progress)


def cwru_split(config: BuildConfig) -> Any | None:
    """The CWRU split (classes capped per side when asked), or None when the data is absent."""
    from slewguard.signal.cwru import load_cwru
    from slewguard.signal.datasets import DatasetMissingError

    try:
        split = load_cwru(config.cwru_root, protocol=config.cwru_protocol, window_seconds=1.0)
    except DatasetMissingError:
        return None
    cap = config.cwru_windows_per_class
    if cap is not None:
        for side in ("train", "test"):
            ws = getattr(split, side)
            idx = np.concatenate([np.flatnonzero(ws.labels == c)[:cap] for c in np.unique(
                ws.labels)])
            setattr(split, side, ws.subset(np.sort(idx)))
    return split


def build_data(config: BuildConfig, log: Any) -> BuildData:
    """Simulate, read CWRU, split off the held-out set and turn every window into text."""
    def feat(ws: Any, name: str) -> Texts:
        return featurize(ws, name, config.show_progress, config.features)

    sim, fleet = simulated_splits(config)
    keep, held = holdout(sim.train, config.calib_fraction, config.seed)
    parts = {"train": [feat(sim.train.subset(keep), "sim train")],
             "calib": [feat(sim.train.subset(held), "sim held-out")]}
    tests = [feat(sim.test, "test-sim"),
             feat(fleet.test, "test-fleet")]
    tests[0].note, tests[1].note = sim.note, "demo fleet: slew-4pc-1000, 6 rpm, 0 dB, severity 2"
    sources = [_source(sim, "simulated", len(keep), len(held)),
               _source(fleet, "simulated demo fleet", 0, 0)]
    notes = []
    cwru = cwru_split(config)
    if cwru is None:
        notes.append("CWRU recordings absent: trained on simulated data only")
        log(f"[yellow]{notes[-1]}[/]")
    else:
        keep, held = holdout(cwru.train, config.calib_fraction, config.seed)
        parts["train"].append(feat(cwru.train.subset(keep), "cwru train"))
        parts["calib"].append(feat(cwru.train.subset(held), "cwru held-out"))
        tests.append(feat(cwru.test, "test-cwru"))
        tests[-1].note = cwru.note
        sources.append(_source(cwru, cwru.name, len(keep), len(held)))
    return BuildData(concat_texts("train", parts["train"]), concat_texts("calib", parts["calib"]),
                     tests, sources, notes)


def _source(split: Any, name: str, n_train: int, n_heldout: int) -> dict:
    """A card DataSource record plus the split's provenance (CWRU file hashes left out)."""
    return {"path": split.provenance.get("root", "simulated"), "name": name,
            "note": f"{split.note} Held out of train (validation, temperature, OOD): "
                    f"{n_heldout}.", "n_train": n_train, "n_test": len(split.test),
            "provenance": {k: v for k, v in split.provenance.items() if k != "files"}}
