"""Vocabulary trimming: keep the embedding rows of the tokens the texts can produce.

The feature texts come from a closed template, so a pretrained model uses a few hundred of its
30k-50k tokens; their embedding rows are most of a small model's parameters. ``trim_vocabulary``
keeps the ids the sample texts produce plus every special / added token, slices the input (and
any output) embedding rows, remaps the special ids in ``model.config`` and returns a plain
``PreTrainedTokenizerFast`` whose own vocabulary is renumbered, so it encodes straight to the
new ids and saves / loads like any tokenizer (no wrapper class, no extra file).

The tokenizer's pipeline (normaliser, pre-tokeniser, post-processor) is kept; its model loses
the unused entries: WordLevel and WordPiece keep the produced tokens, Unigram the produced
pieces, BPE the produced tokens plus every intermediate merge result they are built from (so
the kept merges replay exactly). Text the sample did not cover may tokenise differently (often
to the unknown token): pass every text the model will see, e.g. the training texts plus the
template's vocabulary. The result is re-encoded and checked against the old ids before return.

Example:
    >>> from slewguard.models.backbones import build
    >>> bb = build("tiny-gpt2", num_labels=2, vocabulary=["rms", "high", "low", "bpfo", "ftf"])
    >>> model, tokenizer = trim_vocabulary(bb.model, bb.tokenizer, ["rms high", "bpfo high"])
    >>> tokenizer.vocab_size, model.get_input_embeddings().num_embeddings  # 4 special + 3 words
    (7, 7)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerFast

CONFIG_TOKEN_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id",
                       "cls_token_id", "mask_token_id", "decoder_start_token_id")


def trim_vocabulary(model: PreTrainedModel, tokenizer: Any, texts: Sequence[str]
                    ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Slice ``model``'s embeddings (in place) to the tokens ``texts`` use; return both.

    Example:
        >>> from slewguard.models.backbones import build
        >>> bb = build("tiny-bert", num_labels=2, vocabulary=["rms", "high", "low", "bpfo"])
        >>> bb.tokenizer("bpfo high")["input_ids"]
        [2, 7, 5, 3]
        >>> model, tok = trim_vocabulary(bb.model, bb.tokenizer, ["rms high", "bpfo high"])
        >>> model.config.vocab_size, tok("bpfo high")["input_ids"], tok("low")["input_ids"]
        (7, [2, 6, 5, 3], [2, 1, 3])
    """
    if not texts:
        raise ValueError("texts=[]: pass the texts the model will see (training texts plus the "
                         "template vocabulary)")
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"tokenizer={type(tokenizer).__name__} is not backed by the tokenizers "
                         "library: load it with use_fast=True")
    old_ids = [tokenizer(text)["input_ids"] for text in texts]
    data = json.loads(backend.to_str())
    kept_tokens = _kept_tokens(data, tokenizer, model, {i for ids in old_ids for i in ids})
    old_vocab = backend.get_vocab(with_added_tokens=True)
    kept = sorted(old_vocab[t] for t in kept_tokens)
    remap = {old: new for new, old in enumerate(kept)}
    _renumber(data, remap, old_vocab)
    new_tokenizer = _wrap(Tokenizer.from_str(json.dumps(data)), tokenizer)
    _check(new_tokenizer, texts, old_ids, remap)
    _slice_embeddings(model, torch.as_tensor(kept, dtype=torch.long))
    for field in CONFIG_TOKEN_FIELDS:
        value = getattr(model.config, field, None)
        if isinstance(value, int):
            setattr(model.config, field, remap.get(value))
    model.config.vocab_size = len(kept)
    return model, new_tokenizer


def _kept_tokens(data: dict, tokenizer: Any, model: PreTrainedModel, used: set[int]) -> set[str]:
    """Strings of used, special, added and config-referenced tokens (+ BPE merge ancestors)."""
    vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True)
    by_id = {i: t for t, i in vocab.items()}
    ids = set(used) | {t["id"] for t in data.get("added_tokens", [])}
    ids |= {i for i in (tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens)
            if isinstance(i, int)}
    ids |= {getattr(model.config, f) for f in CONFIG_TOKEN_FIELDS
            if isinstance(getattr(model.config, f, None), int)}
    unk = data["model"].get("unk_token")
    tokens = {by_id[i] for i in ids if i in by_id} | ({unk} if unk in vocab else set())
    if data["model"]["type"] == "BPE":
        tokens |= _merge_ancestors(data["model"], tokens)
    return tokens


def _merges(model: dict) -> list[tuple[str, str]]:
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]


def _merge_ancestors(model: dict, tokens: set[str]) -> set[str]:
    """Every token a kept BPE token can be merged from (transitively)."""
    parts: dict[str, list[tuple[str, str]]] = {}
    for a, b in _merges(model):
        parts.setdefault(a + b, []).append((a, b))
    closed, todo = set(tokens), list(tokens)
    while todo:
        for pair in parts.get(todo.pop(), []):
            for piece in pair:
                if piece not in closed:
                    closed.add(piece)
                    todo.append(piece)
    return closed


def _renumber(data: dict, remap: dict[int, int], old_vocab: dict[str, int]) -> None:
    """Rewrite the tokenizer JSON: model vocabulary, merges, added tokens, padding, processors."""
    model = data["model"]
    if model["type"] in ("WordLevel", "WordPiece", "BPE"):
        model["vocab"] = {t: remap[i] for t, i in model["vocab"].items() if i in remap}
        if model["type"] == "BPE":
            model["merges"] = [[a, b] for a, b in _merges(model)
                               if a + b in model["vocab"] and a in model["vocab"]
                               and b in model["vocab"]]
    elif model["type"] == "Unigram":
        if model.get("unk_id") is not None:
            model["unk_id"] = remap[model["unk_id"]]
        model["vocab"] = [piece for i, piece in enumerate(model["vocab"]) if i in remap]
    else:
        raise ValueError(f"tokenizer model type {model['type']!r} is not supported; "
                         "supported: WordLevel, WordPiece, BPE, Unigram")
    data["added_tokens"] = [{**t, "id": remap[t["id"]]} for t in data.get("added_tokens", [])]
    if data.get("padding") and data["padding"].get("pad_id") is not None:
        data["padding"]["pad_id"] = remap.get(data["padding"]["pad_id"], 0)
    if data.get("post_processor"):
        _renumber_processor(data["post_processor"], remap)


def _renumber_processor(node: Any, remap: dict[int, int]) -> None:
    """TemplateProcessing ``ids`` lists, Bert/RobertaProcessing ``[token, id]`` pairs, Sequences."""
    if isinstance(node, list):
        for item in node:
            _renumber_processor(item, remap)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                node[key] = [remap[i] for i in value]
            elif key in ("sep", "cls") and isinstance(value, list) and len(value) == 2:
                node[key] = [value[0], remap[value[1]]]
            else:
                _renumber_processor(value, remap)


def _wrap(backend: Tokenizer, old: Any) -> PreTrainedTokenizerFast:
    specials = {name: getattr(old, name) for name in
                ("unk_token", "pad_token", "cls_token", "sep_token", "mask_token",
                 "bos_token", "eos_token") if getattr(old, name, None) is not None}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, padding_side=old.padding_side,
        truncation_side=old.truncation_side, model_max_length=old.model_max_length,
        model_input_names=list(old.model_input_names), **specials)


def _check(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], old_ids: list[list[int]],
           remap: dict[int, int]) -> None:
    for text, ids in zip(texts, old_ids, strict=True):
        new = tokenizer(text)["input_ids"]
        if new != [remap[i] for i in ids]:
            raise RuntimeError(f"trimmed tokenizer encodes {text!r} as {new}, expected the "
                               f"remapped {[remap[i] for i in ids]}: please report this tokenizer")


def _slice_rows(embedding: nn.Module, kept: torch.Tensor) -> None:
    weight = embedding.weight
    new = weight.detach().index_select(0, kept.to(weight.device)).clone()
    embedding.weight = nn.Parameter(new, requires_grad=weight.requires_grad)
    if getattr(embedding, "bias", None) is not None and embedding.bias.shape[0] == weight.shape[0]:
        bias = embedding.bias.detach().index_select(0, kept.to(weight.device)).clone()
        embedding.bias = nn.Parameter(bias, requires_grad=embedding.bias.requires_grad)
    if isinstance(embedding, nn.Embedding):
        embedding.num_embeddings = len(kept)
        if embedding.padding_idx is not None:
            hits = (kept == embedding.padding_idx).nonzero()
            embedding.padding_idx = int(hits[0, 0]) if len(hits) else None
    elif isinstance(embedding, nn.Linear):
        embedding.out_features = len(kept)


def _slice_embeddings(model: PreTrainedModel, kept: torch.Tensor) -> None:
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    tied = outputs is not None and outputs.weight is inputs.weight
    _slice_rows(inputs, kept)
    if outputs is not None:
        if tied:
            outputs.weight = inputs.weight
            outputs.out_features = len(kept)
        else:
            _slice_rows(outputs, kept)
