"""Evidence tables of the three domains: the randomised simulator, CWRU and UESTC.

What ``bench/bench_transfer.py`` (leave one rig out) and the ``t3`` model build read: every
window of a domain through ``signal.evidence`` (defect-line prominence over the local envelope
floor at the geometry's orders, the speed fitted within +-8 % of the nominal one, whitened
shape), its level relative to its bearing's own commissioning baseline, its label and its
recording. Commissioning windows make the baseline and are never scored:

- ``cwru``: one bearing (the rig); Normal's first 2 s are the baseline.
- ``uestc``: one bearing per nominal speed; the first two windows of N at that speed.
- ``sim``: every simulated machine its own bearing; two commissioning windows each.

Example:
    >>> table = evidence_table(sim_sets(2, seed=0, per_class=1), "sim")
    >>> sorted(set(table.y.tolist()))
    ['healthy', 'inner_race', 'outer_race', 'rolling_element']
    >>> table.X.shape[1] == len(INPUTS), len(table.recording) == len(table)
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slewguard.signal import evidence
from slewguard.signal.datasets import WindowSet
from slewguard.signal.kinematics import preset

CLASSES = ("healthy", "inner_race", "outer_race", "rolling_element")
SPEED_UNCERTAINTY = 0.08  # the speed fitted within +-8 % of the nominal one
# every evidence column but the fitted speed scale (it measures the label, not the bearing),
# plus the baseline deltas
INPUTS = tuple(n for n in evidence.EVIDENCE_NAMES if n != "speed_scale") + (
    "rms_rel_db", "kurtosis_rel")


@dataclass
class EvidenceTable:
    """Evidence rows (``X``, INPUTS order) with label, recording, bearing group and domain."""

    X: np.ndarray
    y: np.ndarray
    recording: np.ndarray
    group: np.ndarray
    domain: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def rows(self) -> list[dict[str, float]]:
        """Each row as the dict ``textify_evidence.textify`` reads (baseline present)."""
        return rows_of(self.X)

    def take(self, mask: np.ndarray) -> EvidenceTable:
        """The rows where ``mask`` is true."""
        return EvidenceTable(*(getattr(self, k)[mask] for k in
                               ("X", "y", "recording", "group", "domain")))

    @staticmethod
    def stack(parts: list[EvidenceTable]) -> EvidenceTable:
        """The rows of every part, in order."""
        return EvidenceTable(*(np.concatenate([getattr(p, k) for p in parts]) for k in
                               ("X", "y", "recording", "group", "domain")))


def rows_of(X: np.ndarray) -> list[dict[str, float]]:
    """Evidence rows in INPUTS order as the dicts ``textify_evidence.textify`` reads (every
    scored window has its baseline: commissioning windows are never scored)."""
    return [dict(zip(INPUTS, map(float, x), strict=True)) | {"has_baseline": 1.0} for x in X]


def texts_of(X: np.ndarray) -> list[str]:
    """The t3 texts of evidence rows in INPUTS order."""
    from slewguard.signal.textify_evidence import textify

    return [textify(row) for row in rows_of(X)]


def cwru_sets(root=None) -> list[WindowSet]:
    """Every CWRU 12 kHz drive-end recording of the four classes, 1 s windows (30 shaft
    turns); Normal's 5 s with a 0.5 s hop. One bearing group: the rig."""
    from slewguard.signal.cwru import _read_cwru_manifest, _window_recording, default_cwru_root

    root = default_cwru_root() if root is None else root
    sets = []
    for row in _read_cwru_manifest(root):
        if row["class"] not in ("Normal", "IR", "OR", "B"):
            continue
        hop = 6000 if row["class"] == "Normal" else 12000
        ws = _window_recording(root, "all", row, False, 12000, hop)
        first = (ws.labels == "healthy") & (ws.start_s + 1.0 <= 2.0 + 1e-9)
        ws.meta = {"group": np.full(len(ws), "cwru"),
                   "commissioning": np.where(first, "1", "0")}
        sets.append(ws)
    return sets


def uestc_sets(root=None) -> list[WindowSet]:
    """Every UESTC condition, 2 s windows; one bearing group per nominal speed."""
    from slewguard.signal.uestc import default_uestc_root, load_uestc_all

    ws = load_uestc_all(default_uestc_root() if root is None else root, window_seconds=2.0)
    first = (ws.labels == "healthy") & (ws.meta["part"] == "1") & (ws.start_s < 4.0 - 1e-9)
    ws.meta = {"group": np.array([f"uestc-{r:g}" for r in ws.rpm]),
               "commissioning": np.where(first, "1", "0")}
    return [ws]


def sim_sets(n_machines: int, seed: int, per_class: int) -> list[WindowSet]:
    """``n_machines`` randomised machines (``signal.randomise``), ``per_class`` windows each."""
    from slewguard.signal.randomise import randomised_sets

    sets = randomised_sets(n_machines, windows_per_class=per_class, seed=seed)
    for ws in sets:
        ws.meta = {"group": ws.meta["machine"], "commissioning": ws.meta["commissioning"]}
    return sets


def evidence_table(sets: list[WindowSet], domain: str, progress: bool = False) -> EvidenceTable:
    """Evidence rows of every window, baseline deltas per group; commissioning rows dropped."""
    from rich.progress import track

    items = [(ws, i) for ws in sets for i in range(len(ws))]
    rows, raw = [], []
    for ws, i in track(items, description=f"evidence {domain}", transient=True,
                       disable=not progress):
        g = preset(str(ws.bearings()[i]))
        rows.append(evidence.extract(ws.windows[i], ws.sample_rate_hz, g, float(ws.rpm[i]),
                                     SPEED_UNCERTAINTY))
        raw.append((ws.windows[i], str(ws.meta["group"][i]), ws.meta["commissioning"][i] == "1",
                    str(ws.labels[i]), str(ws.recording[i])))
    baselines = {}
    for group in {r[1] for r in raw}:
        idx = [k for k, r in enumerate(raw) if r[1] == group and r[2]]
        if idx:
            baselines[group] = evidence.Baseline.from_windows([raw[k][0] for k in idx],
                                                              [rows[k] for k in idx])
    keep = [k for k, r in enumerate(raw) if not r[2]]
    for k in keep:
        rows[k].update(evidence.relative(raw[k][0], baselines.get(raw[k][1])))
    return EvidenceTable(X=np.array([[rows[k][n] for n in INPUTS] for k in keep]).reshape(
                             len(keep), len(INPUTS)),
                         y=np.array([raw[k][3] for k in keep], dtype=str),
                         recording=np.array([raw[k][4] for k in keep], dtype=str),
                         group=np.array([raw[k][1] for k in keep], dtype=str),
                         domain=np.full(len(keep), domain))


def held_recordings(table: EvidenceTable, fraction: float, seed: int) -> np.ndarray:
    """A mask of ``fraction`` of the recordings of each class (at least one where a class has
    two or more): a split by recording, never windows of one recording on both sides.

    Example:
        >>> t = EvidenceTable(np.zeros((4, 1)), np.array(["a", "a", "b", "b"]),
        ...                   np.array(["r1", "r2", "r3", "r3"]), np.zeros(4), np.zeros(4))
        >>> int(held_recordings(t, 0.5, 0).sum())
        1
    """
    rng = np.random.default_rng(seed)
    held = np.zeros(len(table), bool)
    for c in np.unique(table.y):
        recs = np.unique(table.recording[table.y == c])
        if len(recs) < 2:
            continue
        pick = rng.choice(recs, max(1, int(round(fraction * len(recs)))), replace=False)
        held |= np.isin(table.recording, pick)
    return held


# What the t3 model's out-of-distribution check reads: a rig-invariant summary, not every line.
# Shaft and BSF lines light up wherever a geometry puts a defect order next to a shaft harmonic
# (UESTC: 2 x BSF = 3.99 and BPFI - 1 = 3.95 shaft orders, both next to 4 x shaft), which says
# more about the rig than about the diagnosis.
TRUST_INPUTS = ("bpfo_h1_db", "bpfi_h1_db", "bsf2_h1_db", "rms_rel_db", "kurtosis_rel",
                "speed_confidence_db")
TEST_FRACTION = 0.25  # of each real rig's recordings per class, for the card's test splits


def to_texts(table: EvidenceTable, name: str, note: str = ""):
    """``table`` as a build split (``build_data.Texts``): t3 texts, labels and the
    TRUST_INPUTS columns as its features."""
    from slewguard.models.build_data import Texts

    cols = [INPUTS.index(n) for n in TRUST_INPUTS]
    return Texts(name, texts_of(table.X), table.y.tolist(), table.X[:, cols].astype(np.float32),
                 note)


def build_data(config, log):
    """The t3 build's data (``BuildConfig.template == "t3"``): evidence texts of the
    randomised simulator (``config.sim_machines`` machines) and, where present, of CWRU and
    UESTC. Each real rig gives a quarter of its recordings per class to a test split; a
    fifth of the training recordings (each domain's) is held out for validation, temperature
    and the OOD threshold. Split by recording throughout. Features: TRUST_INPUTS.

    Example:
        >>> from slewguard.models.build_config import BuildConfig
        >>> data = build_data(BuildConfig.for_mode(True, template="t3"), print)  # doctest: +SKIP
        >>> data.train.texts[0]                                                # doctest: +SKIP
        'outer 2 inner 0 level 1'
    """
    from slewguard.models.build_data import BuildData, concat_texts
    from slewguard.signal.datasets import DatasetMissingError

    progress = config.show_progress
    per_class = config.sim_windows_per_class
    sim = evidence_table(sim_sets(config.sim_machines, 100 + config.seed, per_class), "sim",
                         progress)
    sim_test = evidence_table(sim_sets(max(2, config.sim_machines // 2), 200 + config.seed,
                                       per_class), "sim", progress)
    sim_note = (f"randomised simulator (signal.randomise): {config.sim_machines} machines, "
                f"{per_class} windows per class each, seed {100 + config.seed}; test: other "
                f"machines, seed {200 + config.seed}")
    domains = [("simulated", sim, None, sim_note)]
    tests = [to_texts(sim_test, "test-sim", sim_note)]
    notes = []
    for name, loader, root in (("cwru", cwru_sets, config.cwru_root),
                               ("uestc", uestc_sets, config.uestc_root)):
        try:
            table = evidence_table(loader(root), name, progress)
        except DatasetMissingError as exc:
            notes.append(f"{name} recordings absent ({exc}): not in this build")
            log(f"[yellow]{notes[-1]}[/]")
            continue
        test = held_recordings(table, TEST_FRACTION, config.seed)
        note = (f"{name}: every recording of the four classes, split by recording: "
                f"{len(np.unique(table.recording[test]))} recordings to test-{name}")
        domains.append((name, table.take(~test), table.take(test), note))
        tests.append(to_texts(table.take(test), f"test-{name}", note))
    parts = {"train": [], "calib": []}
    sources = []
    for name, table, test, note in domains:
        held = held_recordings(table, config.calib_fraction, config.seed + 1)
        parts["train"].append(to_texts(table.take(~held), f"{name} train"))
        parts["calib"].append(to_texts(table.take(held), f"{name} held-out"))
        sources.append({"path": name, "name": name, "note": f"{note}. Held out of train "
                        f"(validation, temperature, OOD): {int(held.sum())}.",
                        "n_train": int((~held).sum()),
                        "n_test": len(sim_test) if test is None else len(test),
                        "provenance": {"domain": name, "recordings": int(len(np.unique(
                            table.recording)))}})
    return BuildData(concat_texts("train", parts["train"]),
                     concat_texts("calib", parts["calib"]), tests, sources, notes,
                     feature_names=TRUST_INPUTS)


def window_texts(ws: WindowSet, speed_uncertainty: float = 0.0) -> list[str]:
    """The t3 text of every window of a data set, without a baseline (a data set has no
    commissioning windows: the level reads ``nobase``), as ``slewguard predict`` feeds a t3
    model.

    Example:
        >>> ws = sim_sets(1, seed=3, per_class=1)[0]
        >>> window_texts(ws)[0].endswith("level nobase")
        True
    """
    from slewguard.signal.textify_evidence import textify

    return [textify(evidence.extract(ws.windows[i], ws.sample_rate_hz,
                                     preset(str(ws.bearings()[i])), float(ws.rpm[i]),
                                     speed_uncertainty)) for i in range(len(ws))]
