"""Feature row -> one short, deterministic text over a closed vocabulary, and back.

The text names a handful of features and gives each an ordinal level 0..9:

    outer 6 4 2 inner 0 0 1 ball 1 0 0 cage 0 0 0 side 0 shaft 1 kurt 3 crest 2 sk 4 rms 3 speed 2

"outer a b c" are the envelope levels (dB over the local floor) at BPFO harmonics 1..3, "inner"
BPFI, "ball" 2 x BSF, "cage" FTF; "side" the shaft-rate sidebands of BPFI; then excess kurtosis,
crest factor, spectral kurtosis of the demodulation band, RMS level and shaft speed. Every word
and level is one BERT wordpiece, so a text is 30 tokens with [CLS] and [SEP]. Field order and bin
edges are data (FIELDS); a change to either is a new TEMPLATE_VERSION, which model cards record.
``quantise`` gives the level of every field, ``parse`` reads the levels back:
``parse(textify(f)) == quantise(f)``.

Example:
    >>> from slewguard.signal.features import FEATURE_NAMES
    >>> row = dict.fromkeys(FEATURE_NAMES, 0.0) | {"env_bpfo_h1_db": 22.0, "rpm": 6.0}
    >>> textify(row)[:17]
    'outer 6 0 0 inner'
    >>> parse(textify(row))["env_bpfo_h1_db"]
    6.0
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from slewguard.signal.features import FeatureTable

TEMPLATE_VERSION = "t1"

# dB over the local noise floor; a healthy window's lines sit below ~12 dB.
LINE_DB_EDGES = (4.0, 7.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0)
KURTOSIS_EDGES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)  # excess kurtosis
CREST_EDGES = (3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 8.0, 10.0, 15.0)
SK_EDGES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
RMS_DB_EDGES = (-40.0, -30.0, -20.0, -10.0, 0.0, 10.0, 20.0, 30.0, 40.0)  # 20 log10(rms)
RPM_EDGES = (1.0, 2.0, 4.0, 8.0, 16.0, 50.0, 200.0, 1000.0, 3000.0)


def _lines(prefix: str) -> tuple[tuple[str, str, tuple[float, ...]], ...]:
    return tuple((f"env_{prefix}_h{k}_db", "", LINE_DB_EDGES) for k in (1, 2, 3))


# (word, [(feature, transform, bin edges), ...]): one word, then one level per feature.
FIELDS: tuple[tuple[str, tuple[tuple[str, str, tuple[float, ...]], ...]], ...] = (
    ("outer", _lines("bpfo")),
    ("inner", _lines("bpfi")),
    ("ball", _lines("bsf2")),
    ("cage", _lines("ftf")),
    ("side", (("env_bpfi_sideband_db", "", LINE_DB_EDGES),)),
    ("shaft", (("env_shaft_db", "", LINE_DB_EDGES),)),
    ("kurt", (("kurtosis", "", KURTOSIS_EDGES),)),
    ("crest", (("crest_factor", "", CREST_EDGES),)),
    ("sk", (("band_sk", "", SK_EDGES),)),
    ("rms", (("rms", "db", RMS_DB_EDGES),)),
    ("speed", (("rpm", "", RPM_EDGES),)),
)
TEXT_FEATURES: tuple[str, ...] = tuple(name for _, parts in FIELDS for name, _, _ in parts)
N_LEVELS = 10
LEVEL_WORDS = tuple(str(i) for i in range(N_LEVELS))


def _level(value: float, transform: str, edges: tuple[float, ...]) -> int:
    if transform == "db":
        value = 20.0 * np.log10(max(value, 1e-12))
    return int(np.searchsorted(edges, value, side="right"))


def quantise(features: Mapping[str, float]) -> dict[str, float]:
    """The level (0..9, as float) of every feature the text carries, in template order.

    Example:
        >>> quantise(dict.fromkeys(TEXT_FEATURES, 0.0) | {"kurtosis": 3.0})["kurtosis"]
        3.0
    """
    missing = [name for name in TEXT_FEATURES if name not in features]
    if missing:
        raise ValueError(
            f"features lack {missing}: pass a full row from features.extract(...).row(i)"
        )
    levels = {}
    for _, parts in FIELDS:
        for name, transform, edges in parts:
            value = float(features[name])
            if not np.isfinite(value):
                raise ValueError(f"features[{name!r}]={value} is not finite: fix the window")
            levels[name] = float(_level(value, transform, edges))
    return levels


def textify(features: Mapping[str, float]) -> str:
    """One short deterministic text for a feature row (a mapping name -> value).

    Example:
        >>> row = dict.fromkeys(TEXT_FEATURES, 0.0)
        >>> textify(row).split()[:4]
        ['outer', '0', '0', '0']
    """
    levels = quantise(features)
    words = []
    for word, parts in FIELDS:
        words.append(word)
        words.extend(LEVEL_WORDS[int(levels[name])] for name, _, _ in parts)
    return " ".join(words)


def textify_table(table: FeatureTable) -> list[str]:
    """Texts of every row of a FeatureTable, in order.

    Example:
        >>> t = FeatureTable(TEXT_FEATURES, np.zeros((2, len(TEXT_FEATURES)), np.float32))
        >>> len(textify_table(t))
        2
    """
    return [textify(table.row(i)) for i in range(len(table))]


def parse(text: str) -> dict[str, float]:
    """Read the levels back from a text; the inverse of textify on quantised values.

    Example:
        >>> parse(textify(dict.fromkeys(TEXT_FEATURES, 0.0)))["rpm"]
        0.0
    """
    words = text.split()
    expected = sum(1 + len(parts) for _, parts in FIELDS)
    if len(words) != expected:
        raise ValueError(
            f"text has {len(words)} words, template {TEMPLATE_VERSION} has {expected}: "
            f"pass a text made by textify ({text[:60]!r})"
        )
    levels, pos = {}, 0
    for word, parts in FIELDS:
        if words[pos] != word:
            raise ValueError(f"word {pos} is {words[pos]!r}, expected {word!r}: text {text!r}")
        for i, (name, _, _) in enumerate(parts, start=pos + 1):
            if words[i] not in LEVEL_WORDS:
                raise ValueError(f"word {i} is {words[i]!r}, expected a level 0..9: {text!r}")
            levels[name] = float(words[i])
        pos += 1 + len(parts)
    return levels


def vocabulary() -> list[str]:
    """Every word textify can emit: the field words in template order, then the levels.

    Example:
        >>> vocabulary()[:3], vocabulary()[-1]
        (['outer', 'inner', 'ball'], '9')
    """
    return [word for word, _ in FIELDS] + list(LEVEL_WORDS)
