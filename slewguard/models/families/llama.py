"""Llama decoders (SmolLM2 is one): GQA attention (q/k/v/o_proj), a gated FFN (gate/up/down)."""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForSequenceClassification

from slewguard.models.families import Family, register, sizes

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
    tiny_sizes=sizes(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                     num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256),
    **LAYOUT,
))
