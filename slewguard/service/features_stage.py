"""The daemon's features stage: from a batch's clean windows to the rows the model reads.

After decoding and the quality checks, the features thread runs the evidence stage
(``run_evidence``: extraction on the worker pool, then baseline and rule in arrival order), then
builds each window's row: the evidence row for a model that reads it (template t3,
``evidence_rows``), else ``signal.features`` of each group of like windows (same bearing
geometry, sample rate and length) in one ``features.extract`` call (``feature_rows``). A window
that cannot be read is handed to ``reject`` (the pipeline dead-letters it) and leaves the batch.

Example:
    >>> feature_rows([], "tree", print), evidence_rows([], print)
    ([], [])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from slewguard.service.batch import WindowItem, sensor_key
from slewguard.service.evidence_stage import EvidenceStage
from slewguard.service.ingest import Inbound
from slewguard.signal import evidence, features, numeric
from slewguard.signal.evidence import extract as extract_evidence

Found = tuple[WindowItem, dict, np.ndarray]  # (item, row, (F,) float32 row values)
Reject = Callable[[Inbound, str, str], None]  # (message, reason, detail)


def run_evidence(stage: EvidenceStage, items: list[WindowItem], warn: Callable[..., None]) -> None:
    """The evidence stage: each window's own evidence and level on the worker pool (FFTs
    and reductions release the GIL), then baseline and rule in arrival order. A window it
    cannot read keeps the model path; the others get ``item.evidence`` and its fitted rpm.

    Example:
        >>> from slewguard.service.config.evidence import EvidenceConfig
        >>> from slewguard.service.payload import Window
        >>> from slewguard.service.placement import Placement
        >>> from slewguard.signal.evidence import impact_train
        >>> from slewguard.signal.kinematics import preset
        >>> x = impact_train(12000.0, 2.0, 1797.0 / 60 * 3.5848)  # outer-race impacts, 2 s
        >>> window = Window("acc1", 0, 12000.0, 1797.0, 0, "g", x)
        >>> place = Placement("site1", "crane3", "slew", "acc1", preset("cwru-6205"))
        >>> item = WindowItem(Inbound("plant/acc1/vib", b"", 1, 1, 0.0, 0), window, place, 1797.0)
        >>> stage = EvidenceStage(EvidenceConfig(baseline_windows=1), None)
        >>> run_evidence(stage, [item], print)
        >>> item.evidence.verdict, item.rpm
        ('outer_race', 1797.0)
    """
    def one(i: int) -> tuple[dict, tuple[float, float]] | str:
        w, p = items[i].window, items[i].place
        try:
            return (extract_evidence(w.samples, w.sample_rate_hz, p.geometry, items[i].rpm,
                                     p.rpm_uncertainty), evidence.level(w.samples))
        except ValueError as exc:
            return str(exc)
    for item, found in zip(items, numeric.map_rows(one, len(items)), strict=True):
        if isinstance(found, str):
            warn("evidence", "no evidence for %s: %s", item.inbound.topic, found)
            continue
        row, levels = found
        item.evidence = stage.judge(sensor_key(item.place), levels, row, item.rpm,
                                    item.place.rpm_uncertainty)
        item.rpm = item.evidence.rpm


def evidence_rows(items: list[WindowItem], reject: Reject) -> list[Found]:
    """A t3 model's input: each window's evidence row, no features to compute.

    Example:
        >>> from slewguard.service.evidence_stage import WindowEvidence
        >>> from slewguard.service.payload import Window
        >>> from slewguard.service.placement import Placement
        >>> from slewguard.signal.kinematics import preset
        >>> window = Window("acc1", 0, 12000.0, 1797.0, 0, "g", np.zeros(12000, np.float32))
        >>> place = Placement("site1", "crane3", "slew", "acc1", preset("cwru-6205"))
        >>> item = WindowItem(Inbound("plant/acc1/vib", b"", 1, 1, 0.0, 0), window, place, 1797.0)
        >>> def reject(message, reason, detail):
        ...     print(f"{reason}: {detail}")
        >>> evidence_rows([item], reject)  # the evidence stage found nothing: rejected
        evidence: the evidence stage could not read the window from plant/acc1/vib
        []
        >>> item.evidence = WindowEvidence({"bpfo_h1_db": 18.0, "rms_rel_db": 0.5}, 1797.0,
        ...                                "outer_race", "BPFO line")
        >>> [values for _, _, values in evidence_rows([item], reject)]
        [array([18. ,  0.5], dtype=float32)]
    """
    found = []
    for item in items:
        if item.evidence is None:
            reject(item.inbound, "evidence", "the evidence stage could not read the "
                   f"window from {item.inbound.topic}")
            continue
        row = item.evidence.fields
        found.append((item, row, np.fromiter(row.values(), np.float32, len(row))))
    return found


def feature_rows(items: list[WindowItem], method: str, reject: Reject) -> list[Found]:
    """A t1 model's input: features (``method``: the model card's band search) of each group of
    like windows, in one call per group.

    Example:
        >>> from slewguard.service.payload import Window
        >>> from slewguard.service.placement import Placement
        >>> from slewguard.signal.evidence import impact_train
        >>> from slewguard.signal.kinematics import preset
        >>> x = impact_train(12000.0, 2.0, 1797.0 / 60 * 3.5848)  # outer-race impacts, 2 s
        >>> window = Window("acc1", 0, 12000.0, 1797.0, 0, "g", x)
        >>> place = Placement("site1", "crane3", "slew", "acc1", preset("cwru-6205"))
        >>> item = WindowItem(Inbound("plant/acc1/vib", b"", 1, 1, 0.0, 0), window, place, 1797.0)
        >>> found = feature_rows([item, item], "tree", print)  # like windows: one extract call
        >>> [(row["rpm"], values.dtype.name) for _, row, values in found]
        [(1797.0, 'float32'), (1797.0, 'float32')]
    """
    groups: dict[tuple, list[WindowItem]] = defaultdict(list)
    for item in items:
        w = item.window
        groups[(item.place.geometry, w.sample_rate_hz, w.samples.size)].append(item)
    return [found for group in groups.values() for found in _extract(group, method, reject)]


def _extract(group: list[WindowItem], method: str, reject: Reject) -> list[Found]:
    """Features of one group in one call; on failure, window by window to isolate the bad."""
    try:
        table = _extract_table(group, method)
        return [(item, table.row(i), table.values[i]) for i, item in enumerate(group)]
    except ValueError as exc:
        if len(group) == 1:
            reject(group[0].inbound, "features", str(exc))
            return []
    return [pair for item in group for pair in _extract([item], method, reject)]


def _extract_table(group: list[WindowItem], method: str) -> features.FeatureTable:
    first = group[0]
    windows = [item.window.samples for item in group]  # read in place: no (B, N) copy
    rpm = np.array([item.rpm for item in group], dtype=np.float64)  # (B,)
    return features.extract(windows, first.window.sample_rate_hz, first.place.geometry, rpm=rpm,
                            method=method)
