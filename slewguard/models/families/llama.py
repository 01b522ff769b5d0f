"""Llama decoders (SmolLM2 is one): GQA attention (q/k/v/o_proj), a gated FFN (gate/up/down)."""

from __future__ import annotations

from torch import nn
from transformers import LlamaConfig, LlamaForSequenceClassification

from slewguard.models.families import Family, register, sizes
from slewguard.models.prune.surgery import Surgeon


class LlamaSurgeon(Surgeon):
    """Llama-style decoders: GQA attention (q/k/v/o_proj) and a gated FFN (gate/up/down_proj)."""

    family = "llama"
    gqa = True

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.layers

    def modules(self, model: nn.Module, layer: int) -> dict[str, nn.Module]:
        block = self.layers(model)[layer]
        attn, mlp = block.self_attn, block.mlp
        return {"q": attn.q_proj, "k": attn.k_proj, "v": attn.v_proj, "o": attn.o_proj,
                "ffn_in": mlp.up_proj, "ffn_gate": mlp.gate_proj, "ffn_out": mlp.down_proj,
                "layer": block, "attention": attn}

    def head_dim(self, model: nn.Module, layer: int) -> int:
        return self.layers(model)[layer].self_attn.head_dim

    def attention_units(self, model: nn.Module, layer: int) -> int:
        attn = self.layers(model)[layer].self_attn
        return attn.q_proj.out_features // attn.head_dim

    def kv_groups(self, model: nn.Module, layer: int) -> int:
        attn = self.layers(model)[layer].self_attn
        return attn.k_proj.out_features // attn.head_dim

    def _set_heads(self, model: nn.Module, layer: int, n_heads: int, n_kv: int) -> None:
        self.layers(model)[layer].self_attn.num_key_value_groups = n_heads // n_kv

    def _set_ffn(self, model: nn.Module, layer: int, channels: int) -> None:
        self.layers(model)[layer].mlp.intermediate_size = channels


# Module layout shared by the Llama-style families (qwen2.py reuses it).
LAYOUT = dict(
    layers="model.layers",
    attention=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
    value="self_attn.v_proj",
    out_proj="self_attn.o_proj",
    ffn_in=("mlp.gate_proj", "mlp.up_proj"),
    ffn_out="mlp.down_proj",
    head=("score",),
    gqa=True,
)

LLAMA = register(Family(
    model_type="llama",
    config_class=LlamaConfig,
    model_class=LlamaForSequenceClassification,
    surgeon=LlamaSurgeon,
    tiny_sizes=sizes(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                     num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256),
    **LAYOUT,
))
