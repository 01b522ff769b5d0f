"""Tiny random models and a toy classification task shared by the pruning tests."""

from __future__ import annotations

import torch

from tests.models.prune import REGISTRY, tiny_config

VOCAB = 40


def tiny_model(family: str, layers: int = 4) -> torch.nn.Module:
    """A seeded random model of ``family`` (its tiny geometry: 4 query heads, over 2 KV heads
    where it has GQA) with ``layers`` layers and 3 labels."""
    torch.manual_seed(0)
    return REGISTRY[family].model_class(tiny_config(family, VOCAB, layers=layers)).eval()


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
