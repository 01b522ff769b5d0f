"""Evidence a technician reads: the strongest defect lines, impulsiveness, change from baseline.

``explain(row, baseline)`` turns one window's features into one short line (< 160 characters),
for result messages and alert bodies, e.g.

    BPFO 3 harmonics +18 dB; kurtosis 4.2, crest 6.1; RMS +6 dB, BPFO +11 dB vs baseline

A line counts as present from EVIDENCE_DB over the local noise floor (the features' dB scale);
"3 harmonics" counts harmonics over that level, the dB shown is the strongest. The baseline is the
bearing's own running average (``BaselineTracker``: an EWMA per bearing of RMS power, kurtosis,
crest factor and each line's strongest harmonic); only changes of at least CHANGE_DB (RMS, lines)
or CHANGE_KURTOSIS are mentioned.

Example:
    >>> row = {"kurtosis": 4.2, "crest_factor": 6.1, "rms": 0.2}
    >>> row |= {f"env_{l}_h{k}_db": 0.0 for l in LINES for k in (1, 2, 3)}
    >>> row |= {"env_bpfo_h1_db": 18.0, "env_bpfo_h2_db": 14.0, "env_bpfo_h3_db": 9.0}
    >>> explain(row)
    'BPFO 2 harmonics +18 dB; kurtosis 4.2, crest 6.1'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from slewguard.signal.lines import HARMONICS, LINES

# Noise alone lifts the strongest of 3 harmonics above 0 dB on healthy simulated slewing
# windows (docs/benchmarks.md, feature extraction); the threshold sits above that lift and
# below where real faults there start.
EVIDENCE_DB = 12.0
CHANGE_DB = 3.0  # changes smaller than this vs baseline are window-to-window scatter
CHANGE_KURTOSIS = 1.0
MAX_CHARS = 160
LINE_LABELS = {"ftf": "FTF", "bpfo": "BPFO", "bpfi": "BPFI", "bsf2": "2xBSF"}
BASELINE_KEYS = ("rms_power", "kurtosis", "crest_factor") + tuple(f"{line}_db" for line in LINES)


def _line_levels(row: Mapping[str, float], line: str) -> list[float]:
    return [float(row.get(f"env_{line}_h{k}_db", 0.0)) for k in range(1, HARMONICS + 1)]


def _finite(v: float) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _lines_text(row: Mapping[str, float]) -> str:
    """The one or two strongest present lines, strongest first."""
    found = []
    for line in LINES:
        levels = [v for v in _line_levels(row, line) if _finite(v)]
        n_present = sum(v >= EVIDENCE_DB for v in levels)
        if n_present:
            found.append((max(levels), n_present, line))
    if not found:
        return f"no defect line over {EVIDENCE_DB:g} dB"
    found.sort(reverse=True)
    parts = []
    for level, count, line in found[:2]:
        harmonics = f" {count} harmonics" if count > 1 else ""
        parts.append(f"{LINE_LABELS[line]}{harmonics} +{level:.0f} dB")
    return ", ".join(parts)


def _summary(row: Mapping[str, float]) -> dict[str, float]:
    """The baseline quantities of one window."""
    out = {"rms_power": float(row.get("rms", math.nan)) ** 2,
           "kurtosis": float(row.get("kurtosis", math.nan)),
           "crest_factor": float(row.get("crest_factor", math.nan))}
    out |= {f"{line}_db": max(_line_levels(row, line)) for line in LINES}
    return out


def _changes_text(row: Mapping[str, float], baseline: Mapping[str, float]) -> str:
    now = _summary(row)
    parts = []
    if _finite(now["rms_power"]) and baseline.get("rms_power", 0) > 0 and now["rms_power"] > 0:
        db = 10 * math.log10(now["rms_power"] / baseline["rms_power"])
        if abs(db) >= CHANGE_DB:
            parts.append(f"RMS {db:+.0f} dB")
    d_kurt = now["kurtosis"] - baseline.get("kurtosis", math.nan)
    if _finite(d_kurt) and abs(d_kurt) >= CHANGE_KURTOSIS:
        parts.append(f"kurtosis {d_kurt:+.1f}")
    lines = sorted(((now[f"{line}_db"] - baseline.get(f"{line}_db", math.nan), line)
                    for line in LINES), key=lambda p: -abs(p[0]) if _finite(p[0]) else 0)
    for delta, line in lines[:2]:
        if _finite(delta) and abs(delta) >= CHANGE_DB:
            parts.append(f"{LINE_LABELS[line]} {delta:+.0f} dB")
    return ", ".join(parts) + " vs baseline" if parts else "as baseline"


def explain(features_row: Mapping[str, float],
            baseline: Mapping[str, float] | None = None) -> str:
    """One short line of evidence (< 160 characters) for a window's features.

    ``baseline`` is ``BaselineTracker.get(key)`` (None: no comparison).

    Example:
        >>> explain({"kurtosis": 0.1, "crest_factor": 3.9})
        'no defect line over 12 dB; kurtosis 0.1, crest 3.9'
    """
    parts = [_lines_text(features_row)]
    kurt, crest = features_row.get("kurtosis"), features_row.get("crest_factor")
    if kurt is not None and crest is not None and _finite(float(kurt)) and _finite(float(crest)):
        parts.append(f"kurtosis {float(kurt):.1f}, crest {float(crest):.1f}")
    if baseline:
        parts.append(_changes_text(features_row, baseline))
    text = "; ".join(parts)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3] + "..."


@dataclass
class BaselineTracker:
    """A running baseline per bearing: EWMA of RMS power, kurtosis, crest and line levels.

    Feed it windows the trust checks passed and that raised no alarm, so that a developing fault
    does not become the new normal. ``get`` returns None until ``min_windows`` were seen.

    Example:
        >>> tracker = BaselineTracker(alpha=0.5, min_windows=2)
        >>> for rms in (1.0, 1.0):
        ...     tracker.update("crane3/slew", {"rms": rms, "kurtosis": 0.0, "crest_factor": 4.0})
        >>> explain({"rms": 2.0, "kurtosis": 0.0, "crest_factor": 4.0}, tracker.get("crane3/slew"))
        'no defect line over 12 dB; kurtosis 0.0, crest 4.0; RMS +6 dB vs baseline'
    """

    alpha: float = 0.05  # weight of the newest window: ~20 windows of memory
    min_windows: int = 10
    state: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha={self.alpha} must be in (0, 1]: 0.05 remembers ~20 windows")
        if self.min_windows < 1:
            raise ValueError(f"min_windows={self.min_windows} must be >= 1")

    def update(self, key: str, features_row: Mapping[str, float]) -> None:
        """Fold one window's features into the baseline of ``key`` (e.g. site/asset/bearing)."""
        now = _summary(features_row)
        old = self.state.get(key)
        n = self.counts.get(key, 0) + 1
        # Plain mean while warming up (an EWMA would weigh the first window too much), then EWMA.
        weight = max(self.alpha, 1.0 / n)
        if old is None:
            self.state[key] = {k: v for k, v in now.items() if _finite(v)}
        else:
            for k, v in now.items():
                if _finite(v):
                    old[k] = v if k not in old else old[k] + weight * (v - old[k])
        self.counts[key] = n

    def get(self, key: str) -> dict[str, float] | None:
        """The baseline of ``key``, or None before ``min_windows`` windows."""
        if self.counts.get(key, 0) < self.min_windows:
            return None
        return dict(self.state[key])

    def to_json(self) -> str:
        """State as JSON (persist it so a restart keeps the baselines)."""
        return json.dumps({"alpha": self.alpha, "min_windows": self.min_windows,
                           "state": self.state, "counts": self.counts})

    @classmethod
    def from_json(cls, text: str) -> BaselineTracker:
        """Inverse of ``to_json``."""
        doc = json.loads(text)
        return cls(alpha=doc["alpha"], min_windows=doc["min_windows"], state=doc["state"],
                   counts=doc["counts"])
