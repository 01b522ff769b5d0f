"""GPT-2 decoders: MHA over one fused q|k|v Conv1D (weights stored (in, out)), a plain FFN.

Backbones: ``gpt2``, a random model of GPT-2 small geometry (no pretrained weights ship).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import GPT2Config, GPT2ForSequenceClassification

from slewguard.models.families import Family, register, sizes
from slewguard.models.prune.surgery import Surgeon, slice_projection


class GPT2Surgeon(Surgeon):
    """GPT-2: q, k and v live in one fused Conv1D (the Family's query, key and value name it):
    output columns [q | k | v], each heads*hd wide."""

    def projections(self, model: nn.Module, layer: int, attr: str = "weight"
                    ) -> dict[str, torch.Tensor | None]:
        views = super().projections(model, layer, attr)
        fused = views["q"]
        if fused is not None:
            split = self.attention_module(model, layer).split_size
            views["q"], views["k"], views["v"] = fused.split(split, dim=0)
        return views

    def head_dim(self, model: nn.Module, layer: int) -> int:
        return self.attention_module(model, layer).head_dim

    def attention_units(self, model: nn.Module, layer: int) -> int:
        return self.attention_module(model, layer).num_heads

    def _slice_qkv(self, model: nn.Module, layer: int, q_rows: torch.Tensor,
                   kv_rows: torch.Tensor) -> None:
        split = self.attention_module(model, layer).split_size
        index = torch.cat([q_rows, kv_rows + split, kv_rows + 2 * split])
        slice_projection(self.modules(model, layer)["q"], index, "out")

    def _set_heads(self, model: nn.Module, layer: int, n_heads: int, n_kv: int) -> None:
        attn = self.attention_module(model, layer)
        attn.num_heads = n_heads
        attn.split_size = n_heads * attn.head_dim

    def remove_layers(self, model: nn.Module, layers: Sequence[int]) -> None:
        if getattr(model.config, "scale_attn_by_inverse_layer_idx", False):
            raise ValueError("config.scale_attn_by_inverse_layer_idx=True scales attention by the "
                             "layer index, so removing layers would change later layers after a "
                             "reload: prune heads/channels only, or retrain with it off")
        super().remove_layers(model, layers)


GPT2 = register(Family(
    model_type="gpt2",
    config_class=GPT2Config,
    model_class=GPT2ForSequenceClassification,
    tiny_sizes=sizes(n_layer=2, n_embd=32, n_head=4, n_inner=64, n_positions=256),
    # GPT-2 small geometry; with the small textify vocabulary this is ~86M parameters, close to
    # the paper's "GPT-2 88M".
    scratch_sizes=sizes(n_layer=12, n_embd=768, n_head=12, n_positions=512),
    layers="transformer.h",
    query="attn.c_attn",
    key="attn.c_attn",
    value="attn.c_attn",
    out_proj="attn.c_proj",
    ffn_in=("mlp.c_fc",),
    ffn_out="mlp.c_proj",
    surgeon=GPT2Surgeon,
    head=("score",),
    backbones=("gpt2",),
    conv1d=True,
))
