"""Evidence row -> one short text: template ``t3``, rig-invariant and three numbers long.

The words a model of template ``t3`` reads, from ``signal.evidence``: the first BPFO and BPFI
lines in dB over their local envelope floor and the level in dB over the bearing's own
commissioning baseline. Nothing else: no absolute level, no band position, no speed, nothing
that names a rig. Leave one rig out (``bench/bench_transfer.py``) measured every further input
(second harmonics, 2xBSF, sidebands, kurtosis, crest) costing accuracy on a held-out rig:
they describe the rig as much as the bearing.

    outer 7 inner 0 level 2

Each number is a level 0-9 of that quantity (``LINE_DB_EDGES``: finest around the envelope
rule's 12 dB; ``LEVEL_DB_EDGES``: finest around its 2.5 dB). Without a baseline (the bearing
is still commissioning, or its baseline is suspect) the level reads ``nobase``.

Example:
    >>> textify({"bpfo_h1_db": 22.0, "bpfi_h1_db": 3.0, "rms_rel_db": 1.2, "has_baseline": 1.0})
    'outer 9 inner 0 level 3'
    >>> textify({"bpfo_h1_db": 11.5, "bpfi_h1_db": 3.0, "rms_rel_db": 0.0})
    'outer 4 inner 0 level nobase'
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

TEMPLATE_VERSION = "t3"
LINE_DB_EDGES = (6.0, 8.0, 10.0, 11.0, 12.0, 13.0, 14.0, 16.0, 20.0)
LEVEL_DB_EDGES = (-1.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
FIELDS = (("outer", "bpfo_h1_db", LINE_DB_EDGES), ("inner", "bpfi_h1_db", LINE_DB_EDGES),
          ("level", "rms_rel_db", LEVEL_DB_EDGES))
INPUT_NAMES = tuple(name for _, name, _ in FIELDS)  # what the text reads from a row
NO_BASELINE = "nobase"


def _level(value: float, edges: tuple[float, ...]) -> int:
    return int(np.searchsorted(edges, value, side="right")) if np.isfinite(value) else 0


def textify(row: Mapping[str, float]) -> str:
    """The t3 text of one evidence row (``evidence.extract`` merged with ``relative``)."""
    based = float(row.get("has_baseline", 0.0)) > 0
    words = []
    for word, name, edges in FIELDS:
        if name == "rms_rel_db" and not based:
            words += [word, NO_BASELINE]
        else:
            words += [word, str(_level(float(row[name]), edges))]
    return " ".join(words)


def explain(row: Mapping[str, float]) -> str:
    """The evidence a t3 model read, in words, for the result's evidence line.

    Example:
        >>> explain({"bpfo_h1_db": 18.04, "bpfi_h1_db": 3.1, "rms_rel_db": 4.2,
        ...          "has_baseline": 1.0})
        'BPFO line 18.0 dB and BPFI line 3.1 dB over their floors; level +4.2 dB over baseline'
    """
    level = (f"level {float(row['rms_rel_db']):+.1f} dB over baseline"
             if float(row.get("has_baseline", 0.0)) > 0 else "no baseline yet")
    return (f"BPFO line {float(row['bpfo_h1_db']):.1f} dB and BPFI line "
            f"{float(row['bpfi_h1_db']):.1f} dB over their floors; {level}")


def vocabulary() -> list[str]:
    """Every word a t3 text can hold.

    Example:
        >>> len(vocabulary())
        14
    """
    return [w for w, _, _ in FIELDS] + [str(i) for i in range(10)] + [NO_BASELINE]
