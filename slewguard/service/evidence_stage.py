"""The daemon's evidence stage: defect lines, speed estimate, baseline level, envelope rule.

Per window, before the model's features: ``signal.evidence`` (line prominence over the local
floor, whitened shape, and, where the sensor's rpm is only nominal, the speed fitted within
``rpm_uncertainty``), the level relative to the bearing's commissioning baseline
(``BaselineStore``) and the envelope rule's verdict (``signal.rule``). The fitted speed replaces
the nominal one for the model's order-domain features. Everything lands in the result's
numeric fields (``rpm_nominal``, ``rpm_estimated``, ``speed_confidence_db``, ``bpfo_h1_db``,
... , ``rms_rel_db``, ``has_baseline``, ``rule_fault``), so dashboards and the database see it.

Example:
    >>> from slewguard.service.config.evidence import EvidenceConfig
    >>> from slewguard.signal.evidence import impact_train
    >>> from slewguard.signal.kinematics import preset
    >>> stage = EvidenceStage(EvidenceConfig(baseline_windows=1), None)
    >>> x = impact_train(12000.0, 2.0, 1797.0 / 60 * 3.5848)
    >>> out = stage.window("s/a/b/x", x, 12000.0, preset("cwru-6205"), 1797.0 * 1.04, 0.08)
    >>> out.verdict, round(out.fields["rpm_estimated"] / 1797.0, 2)
    ('outer_race', 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slewguard.service.baselines import BaselineStore
from slewguard.signal import evidence
from slewguard.signal.kinematics import BearingGeometry
from slewguard.signal.rule import envelope_rule

if TYPE_CHECKING:
    from slewguard.service.config import ServiceConfig
    from slewguard.service.config.evidence import EvidenceConfig

MIN_SPEED_CONFIDENCE_DB = 3.0  # a fitted speed whose comb leads by less stays nominal


@dataclass(frozen=True)
class WindowEvidence:
    """What the stage found in one window."""

    fields: dict[str, float]  # numeric result fields
    rpm: float  # the speed the model's features should use
    verdict: str  # the envelope rule's verdict
    reason: str  # ... and why, one short line


def baseline_path(config: ServiceConfig) -> Path:
    """Where a ``ServiceConfig``'s baselines live: ``evidence.baseline_path``, else
    ``<outbox stem>-baselines.json`` beside the outbox."""
    if config.evidence.baseline_path is not None:
        return Path(config.evidence.baseline_path)
    outbox = Path(config.outbox.path)
    return outbox.with_name(f"{outbox.stem}-baselines.json")


def evidence_stage(config: ServiceConfig) -> EvidenceStage | None:
    """The stage a ``ServiceConfig`` asks for, None when ``evidence.enabled`` is false."""
    if not config.evidence.enabled:
        return None
    return EvidenceStage(config.evidence, baseline_path(config))


class EvidenceStage:
    """Evidence, baselines and the rule for every window."""

    def __init__(self, config: EvidenceConfig, baseline_path: Path | None) -> None:
        self.config = config
        self.baselines = BaselineStore(baseline_path, config.baseline_windows)

    def window(self, key: str, x: np.ndarray, sample_rate_hz: float,
               geometry: BearingGeometry, rpm: float, rpm_uncertainty: float) -> WindowEvidence:
        """One window's evidence; ``rpm_uncertainty`` > 0 when ``rpm`` is nominal."""
        row = evidence.extract(x, sample_rate_hz, geometry, rpm, rpm_uncertainty)
        return self.judge(key, evidence.level(x), row, rpm, rpm_uncertainty)

    def judge(self, key: str, levels: tuple[float, float], row: dict[str, float], rpm: float,
              rpm_uncertainty: float) -> WindowEvidence:
        """The baseline and the rule on a window's ``evidence.extract`` row and
        ``evidence.level``. Call it in window order per bearing (its first windows are its
        baseline); extraction and level have no state and may run in any order, on any
        thread."""
        row = dict(row)
        fitted = rpm * row["speed_scale"]
        confident = rpm_uncertainty > 0 and row["speed_confidence_db"] >= MIN_SPEED_CONFIDENCE_DB
        use_rpm = fitted if confident else rpm
        baseline = self.baselines.observe_level(key, levels,
                                                max(row["bpfo_h1_db"], row["bpfi_h1_db"]))
        row.update(evidence.relative_level(levels, baseline))
        verdict, reason = envelope_rule(row, self.config.line_db, self.config.level_db)
        if baseline is None:
            reason += f" (learning the baseline: {self.config.baseline_windows} windows)"
        elif baseline.suspect:
            reason += " (baseline suspect: a race line was there at commissioning)"
        fields = {**row, "rpm_nominal": float(rpm), "rpm_estimated": float(use_rpm),
                  "rule_fault": float(verdict != "healthy")}
        fields.pop("speed_scale")
        return WindowEvidence(fields, float(use_rpm), verdict, reason)
