"""BERT encoders (all-MiniLM-L6-v2 ships as one): MHA attention, a plain GELU FFN."""

from __future__ import annotations

from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from slewguard.models.families import Family, register, sizes
from slewguard.models.prune.surgery import Surgeon


class BertSurgeon(Surgeon):
    family = "bert"

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return model.base_model.encoder.layer

    def modules(self, model: nn.Module, layer: int) -> dict[str, nn.Module]:
        block = self.layers(model)[layer]
        attn = block.attention.self
        return {"q": attn.query, "k": attn.key, "v": attn.value, "o": block.attention.output.dense,
                "ffn_in": block.intermediate.dense, "ffn_out": block.output.dense,
                "layer": block, "attention": attn}

    def head_dim(self, model: nn.Module, layer: int) -> int:
        return self.layers(model)[layer].attention.self.attention_head_size

    def attention_units(self, model: nn.Module, layer: int) -> int:
        return self.layers(model)[layer].attention.self.num_attention_heads

    def _set_heads(self, model: nn.Module, layer: int, n_heads: int, n_kv: int) -> None:
        attn = self.layers(model)[layer].attention.self
        attn.num_attention_heads = n_heads
        attn.all_head_size = n_heads * attn.attention_head_size


BERT = register(Family(
    model_type="bert",
    config_class=BertConfig,
    model_class=BertForSequenceClassification,
    tiny_sizes=sizes(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=256),
    layers="bert.encoder.layer",
    attention=("attention.self.query", "attention.self.key", "attention.self.value",
               "attention.output.dense"),
    value="attention.self.value",
    out_proj="attention.output.dense",
    ffn_in=("intermediate.dense",),
    ffn_out="output.dense",
    surgeon=BertSurgeon,
    head=("classifier",),
))
