"""BERT encoders (all-MiniLM-L6-v2 ships as one): MHA attention, a plain GELU FFN."""

from __future__ import annotations

from transformers import BertConfig, BertForSequenceClassification

from slewguard.models.families import Family, register, sizes

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
    head=("classifier",),
))
