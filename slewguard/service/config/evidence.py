"""The ``evidence`` section: defect evidence, the speed estimate and each bearing's baseline.

Example:
    >>> EvidenceConfig().verdict
    'model'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from slewguard.service.config.base import StrictModel


class EvidenceConfig(StrictModel):
    """Rig-invariant defect evidence (signal.evidence) and each bearing's baseline."""

    enabled: bool = Field(True, description="Compute defect-line prominence, the speed "
                          "estimate and the level over the bearing's baseline for every window, "
                          "and the envelope rule's verdict beside the model's. Models of "
                          "template t3 (both shipped ones) read it as their input: false needs "
                          "a t1 model.")
    baseline_windows: int = Field(10, ge=1, le=100_000, description="Windows of each bearing "
                                  "that make its healthy baseline at commissioning.")
    baseline_path: Path | None = Field(None, description="JSON file of the learned baselines; "
                                       "None: baselines.json beside the outbox.")
    line_db: float = Field(12.0, gt=0, le=60, description="Envelope rule: a BPFO or BPFI line "
                           "this many dB over its floor is a race fault.")
    level_db: float = Field(2.5, gt=0, le=60, description="Envelope rule: a level this many dB "
                            "over the baseline without a race line is a rolling-element fault.")
    verdict: Literal["model", "envelope_rule"] = Field(
        "model", description="Whose verdict a result carries: the model's, or the envelope "
        "rule's (on a rig unlike the model's training data; docs/transfer.md).")
