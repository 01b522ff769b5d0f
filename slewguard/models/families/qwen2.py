"""Qwen2 decoders: the Llama layout and surgeon, with q/k/v biases (sliced with their rows) and
per-layer ``layer_types`` (kept in step by ``remove_layers``).

Backbones: ``qwen2``, a random model of the ``scratch_sizes`` below (no pretrained weights ship).
"""

from __future__ import annotations

from transformers import Qwen2Config, Qwen2ForSequenceClassification

from slewguard.models.families import Family, register, sizes
from slewguard.models.families.llama import LAYOUT, LLAMA, LlamaSurgeon

QWEN2 = register(Family(
    model_type="qwen2",
    config_class=Qwen2Config,
    model_class=Qwen2ForSequenceClassification,
    surgeon=LlamaSurgeon,
    tiny_sizes=LLAMA.tiny_sizes,
    scratch_sizes=sizes(num_hidden_layers=12, hidden_size=512, num_attention_heads=8,
                        num_key_value_heads=2, intermediate_size=1536, max_position_embeddings=512),
    backbones=("qwen2",),
    **LAYOUT,
))
