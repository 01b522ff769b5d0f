"""GPT-2 decoders: MHA over one fused q|k|v Conv1D (weights stored (in, out)), a plain FFN."""

from __future__ import annotations

from transformers import GPT2Config, GPT2ForSequenceClassification

from slewguard.models.families import Family, register, sizes

GPT2 = register(Family(
    model_type="gpt2",
    config_class=GPT2Config,
    model_class=GPT2ForSequenceClassification,
    tiny_sizes=sizes(n_layer=2, n_embd=32, n_head=4, n_inner=64, n_positions=256),
    # GPT-2 small geometry; with the small textify vocabulary this is ~86M parameters, close to
    # the paper's "GPT-2 88M".
    scratch_sizes=sizes(n_layer=12, n_embd=768, n_head=12, n_positions=512),
    layers="transformer.h",
    attention=("attn.c_attn", "attn.c_proj"),
    value="attn.c_attn",
    out_proj="attn.c_proj",
    ffn_in=("mlp.c_fc",),
    ffn_out="mlp.c_proj",
    head=("score",),
    conv1d=True,
))
