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

LINE_DB = 12.0
LEVEL_DB = 2.5


def envelope_rule(row: dict[str, float], line_db: float = LINE_DB,
                  level_db: float = LEVEL_DB) -> tuple[str, str]:
    """(verdict, reason) of one window's evidence (``evidence.extract`` + ``relative``)."""
    o, i = float(row["bpfo_h1_db"]), float(row["bpfi_h1_db"])
    level = float(row.get("rms_rel_db", 0.0))
    if max(o, i) >= line_db:
        name, value = ("BPFO", o) if o >= i else ("BPFI", i)
        return ("outer_race" if name == "BPFO" else "inner_race",
                f"{name} line {value:.1f} dB over its floor")
    if level >= level_db:
        return "rolling_element", f"level {level:+.1f} dB over the bearing's baseline, no race line"
    return "healthy", f"no defect line over {line_db:g} dB, level {level:+.1f} dB over baseline"
