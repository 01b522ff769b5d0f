"""Evidence row -> one short text over a closed vocabulary: template ``t2``, rig-invariant.

The words of ``textify`` (``t1``), read from ``signal.evidence`` instead of the rig-bound
features: line prominence over the local envelope floor, level and kurtosis relative to the
bearing's baseline, whitened shape and the speed fit's confidence. No absolute level, no band
position, no speed: nothing that names a rig.

    outer 6 3 1 inner 0 0 1 ball 1 0 0 bsf 0 0 0 cage 0 0 0 shaft 1 0 0 side 1 bside 0
    level 5 dkurt 4 kurt 3 crest 2 fit 6

"level" is RMS over the baseline (0: 3 dB or more below it, 1: within +-1 dB, 2..9 up to +25
dB and more), 0 when there is no baseline (the word "nobase" then follows); "dkurt" the
kurtosis over the baseline's. Every word and level is one BERT wordpiece.

Example:
    >>> from slewguard.signal.evidence import BASELINE_NAMES, EVIDENCE_NAMES
    >>> row = dict.fromkeys(EVIDENCE_NAMES + BASELINE_NAMES, 0.0) | {"bpfo_h1_db": 22.0}
    >>> textify(row)[:17], textify(row).split()[-1]
    ('outer 6 0 0 inner', 'nobase')
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

TEMPLATE_VERSION = "t2"
LINE_DB_EDGES = (4.0, 7.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0)
SIDE_DB_EDGES = LINE_DB_EDGES
LEVEL_DB_EDGES = (-3.0, -1.0, 1.0, 2.5, 4.0, 6.0, 10.0, 15.0, 25.0)
DKURT_EDGES = (-1.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
KURT_EDGES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
CREST_EDGES = (4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 15.0, 20.0)
FIT_DB_EDGES = (3.0, 6.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 80.0)
FIELDS: tuple[tuple[str, tuple[tuple[str, tuple[float, ...]], ...]], ...] = (
    *((word, tuple((f"{line}_h{k}_db", LINE_DB_EDGES) for k in (1, 2, 3)))
      for word, line in (("outer", "bpfo"), ("inner", "bpfi"), ("ball", "bsf2"),
                         ("bsf", "bsf"), ("cage", "ftf"), ("shaft", "shaft"))),
    ("side", (("bpfi_sideband_db", SIDE_DB_EDGES),)),
    ("bside", (("bsf2_sideband_db", SIDE_DB_EDGES),)),
    ("level", (("rms_rel_db", LEVEL_DB_EDGES),)),
    ("dkurt", (("kurtosis_rel", DKURT_EDGES),)),
    ("kurt", (("kurtosis_w", KURT_EDGES),)),
    ("crest", (("crest_w", CREST_EDGES),)),
    ("fit", (("speed_confidence_db", FIT_DB_EDGES),)),
)


def _level(value: float, edges: tuple[float, ...]) -> int:
    return int(np.searchsorted(edges, value, side="right")) if np.isfinite(value) else 0


def textify(row: Mapping[str, float]) -> str:
    """The t2 text of one evidence row (``evidence.extract`` merged with ``relative``)."""
    based = float(row.get("has_baseline", 0.0)) > 0
    words = []
    for word, parts in FIELDS:
        words.append(word)
        for name, edges in parts:
            if name in ("rms_rel_db", "kurtosis_rel") and not based:
                words.append("0")
            else:
                words.append(str(_level(float(row[name]), edges)))
    return " ".join(words + ([] if based else ["nobase"]))


def vocabulary() -> list[str]:
    """Every word a t2 text can hold.

    Example:
        >>> len(vocabulary())
        24
    """
    return [w for w, _ in FIELDS] + [str(i) for i in range(10)] + ["nobase"]
