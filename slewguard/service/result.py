"""One diagnosis of one window: what the pipeline stores in the outbox and the sinks publish.

``key()`` = (site, asset, bearing, sensor, start_ns) identifies the window: where it comes from and
when it starts. Sensor names repeat across assets (``acc1`` on every crane), so the sensor alone
is not an identity. A redelivered MQTT message produces the same key, so the outbox overwrites
it, and the time-series point (tagged with the same four names) lands on the same series and
timestamp.
Non-finite numbers (e.g. an envelope level without an rpm) travel as JSON ``null`` and come back
as NaN, so ``to_json`` always emits strict JSON.

Verdicts (``predicted``): a model class; ``"sensor_fault:<check>"`` when a data-quality check
(signal.quality) failed, with every failed check in ``quality`` and no model probabilities
(confidence NaN); ``"unknown"`` when the out-of-distribution or the kinematic check overruled the
model (its calibrated probabilities are kept). ``evidence`` is one short line a technician reads
(signal.explain); it is text, so the InfluxDB sink (numeric fields only) leaves it out.

Example:
    >>> r = Result("site1", "crane3", "slew", "s1", "m1", "healthy", 0.9, {"healthy": 0.9},
    ...            {"rms": 0.1}, 6.0, 7, 1_700_000_000_000_000_000, "plant/site1/crane3/slew/s1/x")
    >>> Result.from_json(r.to_json()) == r
    True
    >>> diag_topic("plant", r)
    'plant/site1/crane3/slew/s1/diag'
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Result:
    """A diagnosis: where it comes from, what the model said, and the features it saw."""

    site: str
    asset: str
    bearing: str
    sensor: str
    model: str
    predicted: str
    confidence: float
    probabilities: dict[str, float] = field(hash=False)
    features: dict[str, float] = field(hash=False)
    rpm: float
    seq: int
    start_ns: int
    topic: str
    evidence: str = ""
    quality: tuple[str, ...] = field(default=(), hash=False)

    def key(self) -> tuple[str, str, str, str, int]:
        """Idempotency key: where the window comes from and its first-sample time in ns.

        Example:
            >>> a = Result("s1", "crane-1", "slew", "acc1", "m", "healthy", 1.0, {}, {}, 6.0, 0, 5,
            ...            "plant/s1/crane-1/slew/acc1/vib")
            >>> a.key()
            ('s1', 'crane-1', 'slew', 'acc1', 5)
        """
        return (self.site, self.asset, self.bearing, self.sensor, self.start_ns)

    def to_json(self) -> str:
        """Strict JSON (non-finite floats become null); keys sorted so equal results match."""
        doc = {name: getattr(self, name) for name in self.__dataclass_fields__}  # no deep copy
        doc["quality"] = list(self.quality)
        doc["confidence"] = _finite_or_none(self.confidence)
        doc["rpm"] = _finite_or_none(self.rpm)
        doc["probabilities"] = {k: _finite_or_none(v) for k, v in self.probabilities.items()}
        doc["features"] = {k: _finite_or_none(v) for k, v in self.features.items()}
        return json.dumps(doc, sort_keys=True, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Result:
        """Inverse of ``to_json``; raises ValueError naming missing or unknown fields.

        ``evidence`` and ``quality`` may be absent (results stored before they existed).

        Example:
            >>> Result.from_json(Result("a", "b", "c", "d", "m", "healthy", 1.0, {}, {}, 6.0, 0, 0,
            ...                         "t").to_json()).sensor
            'd'
        """
        doc = json.loads(text)
        names = set(cls.__dataclass_fields__)
        doc.setdefault("evidence", "")
        doc["quality"] = tuple(doc.get("quality", ()))
        missing, unknown = sorted(names - set(doc)), sorted(set(doc) - names)
        if missing or unknown:
            raise ValueError(f"result JSON lacks fields {missing} / has unknown fields {unknown}: "
                             "read only what Result.to_json() wrote")
        doc["confidence"] = _nan_if_none(doc["confidence"])
        doc["rpm"] = _nan_if_none(doc["rpm"])
        doc["probabilities"] = {k: _nan_if_none(v) for k, v in doc["probabilities"].items()}
        doc["features"] = {k: _nan_if_none(v) for k, v in doc["features"].items()}
        return cls(**doc)


def diag_topic(prefix: str, result: Result) -> str:
    """The results topic ``<prefix>/<site>/<asset>/<bearing>/<sensor>/diag``.

    Example:
        >>> r = Result("a", "b", "c", "d", "m", "healthy", 1.0, {}, {}, 6.0, 0, 0, "t")
        >>> diag_topic("plant", r) + "/state"
        'plant/a/b/c/d/diag/state'
    """
    return f"{prefix}/{result.site}/{result.asset}/{result.bearing}/{result.sensor}/diag"


def _finite_or_none(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else float(x)
