"""The envelope rule: a diagnosis from the evidence alone, the simplest one that transfers.

Fault when the first line of BPFO or BPFI stands ``line_db`` over its floor (the kind from the
stronger of the two) or, with a healthy baseline, the level rose ``level_db`` over it (rolling
element: its line is rarely visible, its impacts raise the level). Otherwise healthy.

The defaults are the median of the thresholds ``bench/bench_transfer.py`` fits on the
randomised simulator alone (three seeds: T 10.5-13, R 2.5-3.5 dB); with them the rule held
CWRU and UESTC out entirely (see docs/transfer.md for the numbers and the command).

Example:
    >>> envelope_rule({"bpfo_h1_db": 21.0, "bpfi_h1_db": 3.0, "rms_rel_db": 0.4})
    ('outer_race', 'BPFO line 21.0 dB over its floor')
    >>> envelope_rule({"bpfo_h1_db": 4.0, "bpfi_h1_db": 5.0, "rms_rel_db": 0.3})[0]
    'healthy'
"""

from __future__ import annotations

import numpy as np

LINE_DB = 12.0
LEVEL_DB = 2.5


def verdicts(bpfo_db: np.ndarray, bpfi_db: np.ndarray, level_db: np.ndarray,
             line_db: float = LINE_DB, level_rise_db: float = LEVEL_DB) -> np.ndarray:
    """The rule over arrays of windows (the first BPFO and BPFI lines over their floors, the
    level over the baseline): one verdict per window.

    Example:
        >>> verdicts(np.array([21.0, 3.0, 2.0]), np.array([3.0, 14.0, 2.0]),
        ...          np.array([0.0, 0.0, 5.0])).tolist()
        ['outer_race', 'inner_race', 'rolling_element']
    """
    o, i = np.asarray(bpfo_db, float), np.asarray(bpfi_db, float)
    line = np.maximum(o, i) >= line_db
    kind = np.where(line, np.where(o >= i, "outer_race", "inner_race"), "rolling_element")
    return np.where(line | (np.asarray(level_db, float) >= level_rise_db), kind, "healthy")


def envelope_rule(row: dict[str, float], line_db: float = LINE_DB,
                  level_db: float = LEVEL_DB) -> tuple[str, str]:
    """(verdict, reason) of one window's evidence (``evidence.extract`` + ``relative``)."""
    o, i = float(row["bpfo_h1_db"]), float(row["bpfi_h1_db"])
    level = float(row.get("rms_rel_db", 0.0))
    verdict = str(verdicts(np.array([o]), np.array([i]), np.array([level]), line_db,
                           level_db)[0])
    if verdict in ("outer_race", "inner_race"):
        name, value = ("BPFO", o) if verdict == "outer_race" else ("BPFI", i)
        return verdict, f"{name} line {value:.1f} dB over its floor"
    if verdict == "rolling_element":
        return verdict, f"level {level:+.1f} dB over the bearing's baseline, no race line"
    return verdict, f"no defect line over {line_db:g} dB, level {level:+.1f} dB over baseline"
