"""Tiny random models and a toy classification task shared by the pruning tests."""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
)

VOCAB = 40


def tiny_model(family: str, layers: int = 4) -> torch.nn.Module:
    """A seeded random bert, gpt2 or llama (4 query heads over 2 KV heads) with 3 labels."""
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    if family == "bert":
        return BertForSequenceClassification(BertConfig(
            hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, **common)).eval()
    if family == "gpt2":
        return GPT2ForSequenceClassification(GPT2Config(
            n_embd=32, n_layer=layers, n_head=4, n_positions=64, **common)).eval()
    return LlamaForSequenceClassification(LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, **common)).eval()


def toy_batches(n_batches: int = 2, batch_size: int = 8, seq: int = 10) -> list[dict]:
    """Label = which of three marker tokens (5, 6, 7) sits at position 3."""
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(n_batches):
        ids = torch.randint(10, VOCAB, (batch_size, seq), generator=generator)
        labels = torch.randint(0, 3, (batch_size,), generator=generator)
        ids[:, 3] = labels + 5
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                        "labels": labels})
    return batches
