import json

import numpy as np
import pytest
import torch

from slewguard.models import backbones, load
from slewguard.models.classifier import FaultClassifier, class_order, train_classifier
from slewguard.models.scoring import evaluate

VOCABULARY = ["rms", "high", "kurtosis", "bpfo", "low", "calm", "quiet", "ftf",
              "the", "a", "x", "y", "z"]
TEMPLATE = "t-test"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from intra-op threads; on a busy machine spinning threads make
    # them ~30x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def separable_texts(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Two classes told apart only by which half of the vocabulary their words come from."""
    rng = np.random.default_rng(seed)
    words = {"healthy": ["low", "calm", "quiet", "ftf"],
             "outer_race": ["rms", "high", "kurtosis", "bpfo"]}
    texts, labels = [], []
    for i in range(n):
        label = ("healthy", "outer_race")[i % 2]
        tokens = [*rng.choice(words[label], 3), *rng.choice(["the", "a", "x", "y", "z"], 3)]
        rng.shuffle(tokens)
        texts.append(" ".join(tokens))
        labels.append(label)
    return texts, labels


def tiny_classifier(family: str = "tiny-bert") -> FaultClassifier:
    bb = backbones.build(family, 3, vocabulary=VOCABULARY)
    return FaultClassifier(bb.model, bb.tokenizer, ["healthy", "inner_race", "outer_race"],
                           TEMPLATE, card={"family": family, "base_model": bb.base_model})


@pytest.fixture(scope="module")
def trained():
    train, test = separable_texts(64, seed=1), separable_texts(32, seed=2)
    clf, history = train_classifier(*train, *test, family="tiny-llama", epochs=4, lr=1e-2,
                                    batch_size=8, vocabulary=VOCABULARY,
                                    template_version=TEMPLATE, show_progress=False)
    return clf, history, test


@pytest.mark.parametrize("family", ["tiny-bert", "tiny-gpt2", "tiny-llama", "tiny-qwen2"])
def test_save_then_load_reproduces_probabilities_exactly(tmp_path, family):
    clf = tiny_classifier(family)
    texts = ["rms high bpfo", "calm quiet", "a b c never seen", "kurtosis"]
    clf.save(tmp_path)
    again = load(tmp_path, template_version=TEMPLATE)
    assert again.classes == clf.classes and again.template_version == TEMPLATE
    np.testing.assert_array_equal(again.predict_proba(texts), clf.predict_proba(texts))
    assert {"card.json", "README.md", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in tmp_path.iterdir()}


def test_training_on_a_separable_task_beats_chance(trained):
    clf, history, (texts, labels) = trained
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert evaluate(clf, texts, labels)["accuracy"] >= 0.9  # chance is 0.5
    assert clf.predict(["high bpfo rms", "quiet calm low"]) == ["outer_race", "healthy"]


def test_trained_card_records_metrics_and_provenance(trained, tmp_path):
    clf, history, _ = trained
    clf.save(tmp_path)
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["classes"] == ["healthy", "outer_race"]
    assert card["template_version"] == TEMPLATE and card["family"] == "tiny-llama"
    assert set(card["metrics"]["accuracy"]) == {"train", "test"}
    assert set(card["metrics"]["per_class"]) == {"healthy", "outer_race"}
    assert card["metrics"]["history"] == history
    assert card["parameters"]["total"] == card["parameters"]["trainable"] > 0
    assert card["training"]["epochs"] == 4 and card["seed"] == 0
    assert card["training"]["sizes"] == {}
    assert "tiny-llama" in (tmp_path / "README.md").read_text()


def test_a_classifier_built_by_hand_saves_with_a_minimal_card(tmp_path):
    bb = backbones.build("tiny-gpt2", 2, vocabulary=VOCABULARY)
    FaultClassifier(bb.model, bb.tokenizer, ["healthy", "cage"], TEMPLATE).save(tmp_path)
    again = load(tmp_path, template_version=TEMPLATE)
    assert again.card["family"] == "gpt2" and again.classes == ["healthy", "cage"]


def test_load_refuses_a_directory_without_a_card(tmp_path):
    with pytest.raises(ValueError, match="no card.json.*slewguard train"):
        load(tmp_path, template_version=TEMPLATE)
    with pytest.raises(ValueError, match="not a directory"):
        load(tmp_path / "nope", template_version=TEMPLATE)


def test_load_refuses_another_template_version(tmp_path):
    tiny_classifier().save(tmp_path)
    with pytest.raises(ValueError, match="template 't-test', this slewguard speaks 't9'.*retrain"
                                         ".*install slewguard version"):
        load(tmp_path, template_version="t9")


def test_card_names_the_band_search_and_load_refuses_an_unknown_one(tmp_path):
    tiny_classifier().save(tmp_path)
    card_file = tmp_path / "card.json"
    card = json.loads(card_file.read_text())
    assert card["features"] == "tree"  # the default, also for cards written before the field
    del card["features"]
    card_file.write_text(json.dumps(card))
    assert load(tmp_path, template_version=TEMPLATE).card["features"] == "tree"
    card_file.write_text(json.dumps({**card, "features": "wavelet"}))
    with pytest.raises(ValueError, match="features='wavelet'.*tree, stft.*retrain"):
        load(tmp_path, template_version=TEMPLATE)


def test_load_refuses_unsupported_architectures(tmp_path):
    tiny_classifier().save(tmp_path)
    card_file, config_file = tmp_path / "card.json", tmp_path / "config.json"
    card = json.loads(card_file.read_text())
    card_file.write_text(json.dumps({**card, "family": "t5"}))
    with pytest.raises(ValueError, match="family='t5' is not supported"):
        load(tmp_path, template_version=TEMPLATE)
    card_file.write_text(json.dumps(card))
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()),
                                       "model_type": "t5"}))
    with pytest.raises(ValueError, match="'t5' architecture; slewguard runs bert, gpt2"):
        load(tmp_path, template_version=TEMPLATE)


def test_bad_inputs_raise_value_errors():
    clf = tiny_classifier()
    with pytest.raises(ValueError, match="list of strings"):
        clf.predict_proba("rms high")
    with pytest.raises(ValueError, match="labels \\['cage'\\]"):
        evaluate(clf, ["rms"], ["cage"])
    with pytest.raises(ValueError, match="2 names but the model has 3 outputs"):
        FaultClassifier(clf.model, clf.tokenizer, ["healthy", "cage"], TEMPLATE)
    texts, labels = separable_texts(4, seed=0)
    with pytest.raises(ValueError, match="not supported"):
        train_classifier(texts, labels, texts, labels, family="t5", vocabulary=VOCABULARY,
                         template_version=TEMPLATE)
    with pytest.raises(ValueError, match="test_texts is empty"):
        train_classifier(texts, labels, [], [], vocabulary=VOCABULARY, template_version=TEMPLATE)


def test_class_order_is_canonical_then_alphabetical():
    assert class_order(["zeta", "outer_race", "healthy", "cage", "alpha"]) == [
        "healthy", "outer_race", "cage", "alpha", "zeta"]


@pytest.mark.parametrize("family", ["tiny-bert", "tiny-llama"])
def test_pruned_model_with_uneven_layers_saves_and_loads(tmp_path, family):
    surgery = pytest.importorskip("slewguard.models.prune.surgery")
    clf = tiny_classifier(family)
    surgeon = surgery.surgeon_for(clf.model)
    surgeon.remove_heads(clf.model, layer=0, heads=[1, 3])  # one per KV group under GQA
    surgeon.remove_ffn_channels(clf.model, layer=1, channels=list(range(20)))
    texts = ["rms high bpfo", "calm quiet", "kurtosis"]
    clf.save(tmp_path)
    again = load(tmp_path, template_version=TEMPLATE)
    np.testing.assert_array_equal(again.predict_proba(texts), clf.predict_proba(texts))
    dense = backbones.build(family, 3, vocabulary=VOCABULARY).model
    assert again.card["parameters"]["total"] < sum(p.numel() for p in dense.parameters())


def test_long_texts_are_truncated_to_the_position_table():
    clf = tiny_classifier("tiny-gpt2")  # learned positions: index 256 would crash
    assert clf.max_length == clf.model.config.n_positions == 256
    proba = clf.predict_proba([" ".join(["rms"] * 1000)])
    assert proba.shape == (1, 3)


def test_load_casts_to_the_asked_dtype_and_keeps_the_probabilities(tmp_path):
    clf = tiny_classifier("tiny-bert")
    clf.save(tmp_path)
    texts = ["rms high bpfo", "calm quiet", "kurtosis"]
    half = load(tmp_path, template_version=TEMPLATE, dtype="bfloat16")
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    got = half.predict_proba(texts)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, clf.predict_proba(texts), atol=0.02)
    with pytest.raises(ValueError, match="dtype='int8'.*bfloat16"):
        load(tmp_path, template_version=TEMPLATE, dtype="int8")
