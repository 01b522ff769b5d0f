"""Tiny random models of every supported family, and masking references for surgery tests."""

from __future__ import annotations

import torch

from slewguard.models.backbones import model_config
from slewguard.models.families import FAMILIES as REGISTRY

FAMILIES = tuple(sorted(REGISTRY))  # every registered family: a new one is tested here too
VOCAB = 120


def layers_key(family: str) -> str:
    """The config key of the layer count (``n_layer`` for GPT-2, else ``num_hidden_layers``)."""
    return REGISTRY[family].config_class.attribute_map.get("num_hidden_layers",
                                                           "num_hidden_layers")


def tiny_config(family: str, vocab_size: int = VOCAB, pad_token_id: int = 0, layers: int = 3):
    """The family's tiny geometry (hidden 32, 4 query heads, over 2 KV heads where it has GQA,
    FFN 64), ``layers`` layers, 3 labels."""
    return model_config(f"tiny-{family}", vocab_size, 3, pad_token_id,
                        sizes={layers_key(family): layers})


def tiny_model(family: str, seed: int = 0, **config: int) -> torch.nn.Module:
    """A random eval-mode fp32 model; every parameter (biases too) drawn from N(0, 0.15)."""
    torch.manual_seed(seed)
    model = REGISTRY[family].model_class(tiny_config(family, **config))
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
    return REGISTRY[family].layer_stack(model)


def _o_and_down(model, family: str, layer: int):
    """(o-projection weight in (out, in) layout, ffn down-projection weight in (out, in) layout)."""
    fam = REGISTRY[family]
    block = fam.layer_stack(model)[layer]
    o, down = fam.module(block, fam.out_proj).weight, fam.module(block, fam.ffn_out).weight
    return (o.T, down.T) if fam.conv1d else (o, down)  # GPT-2's Conv1D stores (in, out)


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
