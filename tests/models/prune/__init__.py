"""Tiny random models of every supported family, and masking references for surgery tests."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    GPT2Config,
    LlamaConfig,
    Qwen2Config,
)

FAMILIES = ("bert", "gpt2", "llama", "qwen2")
VOCAB = 120


def tiny_config(family: str, vocab_size: int = VOCAB, pad_token_id: int = 0):
    """3 layers, hidden 32, 4 query heads (over 2 KV heads for llama/qwen2), FFN 64, 3 labels."""
    common = {"vocab_size": vocab_size, "num_labels": 3, "pad_token_id": pad_token_id}
    if family == "bert":
        return BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=64, **common)
    if family == "gpt2":
        return GPT2Config(n_embd=32, n_layer=3, n_head=4, n_inner=64, n_positions=64,
                          bos_token_id=1, eos_token_id=1, **common)
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[family]
    return cls(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=64, max_position_embeddings=64, **common)


def tiny_model(family: str, seed: int = 0, **config: int) -> torch.nn.Module:
    """A random eval-mode fp32 model; every parameter (biases too) drawn from N(0, 0.15)."""
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(tiny_config(family, **config))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.15)
    return model.eval()


def batch(seed: int = 0, rows: int = 3, length: int = 9) -> dict[str, torch.Tensor]:
    """Random ids (never the pad id 0) with right padding in the last row."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    ids[-1, length - 3:] = 0
    mask[-1, length - 3:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def logits(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def _stack(model, family):
    return {"bert": lambda: model.bert.encoder.layer, "gpt2": lambda: model.transformer.h,
            "llama": lambda: model.model.layers, "qwen2": lambda: model.model.layers}[family]()


def _o_and_down(model, family: str, layer: int):
    """(o-projection weight in (out, in) layout, ffn down-projection weight in (out, in) layout)."""
    block = _stack(model, family)[layer]
    if family == "bert":
        return block.attention.output.dense.weight, block.output.dense.weight
    if family == "gpt2":
        return block.attn.c_proj.weight.T, block.mlp.c_proj.weight.T
    return block.self_attn.o_proj.weight, block.mlp.down_proj.weight


def mask_heads(model, family: str, layer: int, heads, head_dim: int = 8) -> None:
    """Zero the output-projection input columns of ``heads`` (what removing them must equal)."""
    o, _ = _o_and_down(model, family, layer)
    with torch.no_grad():
        for h in heads:
            o[:, h * head_dim:(h + 1) * head_dim] = 0


def mask_channels(model, family: str, layer: int, channels) -> None:
    _, down = _o_and_down(model, family, layer)
    with torch.no_grad():
        down[:, list(channels)] = 0


def mask_layer(model, family: str, layer: int):
    """Make a layer the identity with a forward hook; returns the hook handle."""
    def identity(module, args, kwargs, output):
        return args[0] if args else kwargs["hidden_states"]
    return _stack(model, family)[layer].register_forward_hook(identity, with_kwargs=True)
