"""A micro-batch in flight through the pipeline: its windows, the prepared batch, their results.

Per message the features thread decodes a ``WindowItem`` (message, window, placement, the rpm its
features use, and the evidence stage's findings); the batch it hands to the inference thread is
a ``PreparedBatch`` (the model's inputs, plus the sensor faults that need no model). After the
model and the trust layer, ``model_result`` and ``fault_result`` turn each item into the
``Result`` the outbox stores.

Example:
    >>> from slewguard.signal.kinematics import preset
    >>> place = Placement("site1", "crane3", "slew", "acc1", preset("cwru-6205"))
    >>> bearing_key(place), sensor_key(place)
    ('site1/crane3/slew', 'site1/crane3/slew/acc1')
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from slewguard.service.evidence_stage import WindowEvidence
from slewguard.service.ingest import Inbound
from slewguard.service.payload import Window
from slewguard.service.placement import Placement
from slewguard.service.result import Result
from slewguard.signal.quality import QualityVerdict


@dataclass
class WindowItem:
    """One decoded message on its way through the features thread."""

    inbound: Inbound
    window: Window
    place: Placement
    rpm: float
    evidence: WindowEvidence | None = None


@dataclass
class PreparedBatch:
    """What the features thread hands the inference thread: the model's inputs and the faults."""

    items: list[WindowItem]
    rows: list[dict]
    texts: list[str]
    values: np.ndarray  # (B, F) the rows in ``names`` order
    names: tuple[str, ...]
    faulty: list[tuple[WindowItem, QualityVerdict, dict]]  # sensor faults: no model needed


_NO_SAMPLES = np.zeros(0, np.float32)


def release(items: list[WindowItem]) -> None:
    """Drop what no later stage reads (the payload bytes, the decoded samples), so the two
    batches in flight after the features hold their results, not their windows: the message
    is acked by its id and, should storing fail, redelivered by the broker."""
    for item in items:
        item.inbound = replace(item.inbound, payload=b"")
        item.window = replace(item.window, samples=_NO_SAMPLES)


def bearing_key(place: Placement) -> str:
    """site/asset/bearing: the trust layer's key for the bearing's baseline."""
    return f"{place.site}/{place.asset}/{place.bearing}"


def sensor_key(place: Placement) -> str:
    """site/asset/bearing/sensor: the evidence stage's key for the sensor's baseline."""
    return f"{place.site}/{place.asset}/{place.bearing}/{place.sensor}"


def model_result(item: WindowItem, row: dict, verdict: str, proba: np.ndarray, evidence: str,
                 *, classes: list[str], model: str, rule_decides: bool) -> Result:
    """The result of a diagnosed window: the trust layer's ``verdict`` and ``evidence`` line
    over the model's probabilities ``proba`` (one per class), joined by the evidence stage's
    fields and rule (whose verdict wins when ``rule_decides``, unless the verdict is unknown).

    Example:
        >>> from slewguard.signal.kinematics import preset
        >>> place = Placement("site1", "crane3", "slew", "acc1", preset("cwru-6205"))
        >>> window = Window("acc1", 0, 12000.0, 1797.0, 7, "g", np.zeros(12000, np.float32))
        >>> item = WindowItem(Inbound("plant/acc1/vib", b"", 1, 1, 0.0, 0), window, place, 1797.0)
        >>> result = model_result(item, {"rms": 0.1}, "healthy", np.array([0.75, 0.25]),
        ...                       "rms 0.1 g", classes=["healthy", "outer_race"], model="m1",
        ...                       rule_decides=False)
        >>> result.predicted, result.confidence, result.probabilities, result.seq
        ('healthy', 0.75, {'healthy': 0.75, 'outer_race': 0.25}, 7)
    """
    w, p = item.window, item.place
    found = {k: float(v) for k, v in row.items()}
    if item.evidence is not None:
        found.update(item.evidence.fields)
        rule = f"envelope rule: {item.evidence.verdict} ({item.evidence.reason})"
        if rule_decides and verdict != "unknown":
            verdict, evidence = item.evidence.verdict, f"{rule}; model: {evidence}"
        else:
            evidence = f"{evidence}; {rule}"
    return Result(
        site=p.site, asset=p.asset, bearing=p.bearing, sensor=p.sensor, model=model,
        predicted=verdict, confidence=float(proba.max()),
        probabilities={c: float(v) for c, v in zip(classes, proba, strict=True)},
        features=found, rpm=item.rpm, seq=int(w.seq),
        start_ns=int(w.start_ns), topic=item.inbound.topic, evidence=evidence)


def fault_result(item: WindowItem, verdict: QualityVerdict, row: dict, *, model: str,
                 evidence: str) -> Result:
    """A sensor-fault result: raw statistics, no model probabilities, never a bearing fault.

    Example:
        >>> from slewguard.signal.kinematics import preset
        >>> place = Placement("site1", "crane3", "slew", "acc1", preset("cwru-6205"))
        >>> window = Window("acc1", 0, 12000.0, 1797.0, 7, "g", np.zeros(12000, np.float32))
        >>> item = WindowItem(Inbound("plant/acc1/vib", b"", 1, 1, 0.0, 0), window, place, 1797.0)
        >>> verdict = QualityVerdict(False, ("flatline",), "the signal does not vary")
        >>> result = fault_result(item, verdict, {"rms": 0.0}, model="m1", evidence="flatline")
        >>> result.predicted, result.probabilities, result.quality
        ('sensor_fault:flatline', {}, ('flatline',))
    """
    w, p = item.window, item.place
    return Result(
        site=p.site, asset=p.asset, bearing=p.bearing, sensor=p.sensor, model=model,
        predicted=f"sensor_fault:{verdict.faults[0]}", confidence=float("nan"),
        probabilities={}, features=row, rpm=item.rpm, seq=int(w.seq),
        start_ns=int(w.start_ns), topic=item.inbound.topic,
        evidence=evidence, quality=verdict.faults)
