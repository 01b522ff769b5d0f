"""Model families: one file per architecture, registered here under its ``config.model_type``.

A ``Family`` holds what slewguard needs to know about an architecture: its transformers config
and ``*ForSequenceClassification`` classes, its pruning ``Surgeon``, the geometry of its tiny
random test model (and of its from-scratch model, where it has one), the module paths of its
layer stack, attention and FFN (what the SIA check masks, what LoRA adapts), and its classifier
head. ``bert.py``,
``gpt2.py``, ``llama.py`` and ``qwen2.py`` each define their ``Surgeon`` subclass and
``register`` one; a new architecture is a new file here, imported at the bottom of this module.

Example:
    >>> sorted(FAMILIES)
    ['bert', 'gpt2', 'llama', 'qwen2']
    >>> llama = FAMILIES["llama"]
    >>> llama.gqa, llama.ffn_in, llama.head
    (True, ('mlp.gate_proj', 'mlp.up_proj'), ('score',))
    >>> model = llama.model_class(llama.config_class(vocab_size=16, **llama.tiny_sizes))
    >>> model.config.model_type, len(llama.layer_stack(model))
    ('llama', 2)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

if TYPE_CHECKING:  # the family files import surgery; surgery finds the families at call time
    from slewguard.models.prune.surgery import Surgeon


@dataclass(frozen=True)
class Family:
    """One architecture: its classes and the module paths and sizes that differ between families.

    Module paths are dotted attribute paths: ``layers`` from the classification model to its
    ``nn.ModuleList`` of transformer layers, the others from one such layer.
    """

    model_type: str
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    surgeon: type[Surgeon]              # its structural cuts (slewguard.models.prune.surgery)
    tiny_sizes: Mapping[str, int]       # config kwargs of the 2-layer random test model
    layers: str                         # model -> stack of layers
    attention: tuple[str, ...]          # layer -> the attention projections LoRA adapts
    value: str                          # layer -> module whose output holds V
    out_proj: str                       # layer -> module whose input is the concatenated heads
    ffn_in: tuple[str, ...]             # layer -> (fc,) or (gate, up)
    ffn_out: str                        # layer -> FFN down projection
    head: tuple[str, ...]               # classifier head modules (train in full under LoRA)
    scratch_sizes: Mapping[str, int] | None = None  # from-scratch geometry, None: none offered
    gqa: bool = False                   # query heads share K/V heads in groups
    conv1d: bool = False                # GPT-2 Conv1D: weights (in, out), q|k|v fused

    @property
    def gated_ffn(self) -> bool:
        """True when the FFN is act(gate(x)) * up(x) (two input projections)."""
        return len(self.ffn_in) == 2

    @property
    def ffn(self) -> tuple[str, ...]:
        """Every FFN projection: the input ones then the output one."""
        return (*self.ffn_in, self.ffn_out)

    def layer_stack(self, model: nn.Module) -> nn.ModuleList:
        """The model's stack of transformer layers."""
        return _resolve(model, self.layers)

    def module(self, block: nn.Module, path: str) -> nn.Module:
        """The module at dotted ``path`` inside one layer ``block``."""
        return _resolve(block, path)


def _resolve(root: nn.Module, path: str) -> nn.Module:
    module = root
    for name in path.split("."):
        module = getattr(module, name)
    return module


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family`` to ``FAMILIES`` under its ``model_type`` (once); returns it.

    Example:
        >>> register(FAMILIES["bert"])
        Traceback (most recent call last):
        ...
        ValueError: model_type='bert' is already registered: one Family per architecture
    """
    if family.model_type in FAMILIES:
        raise ValueError(f"model_type={family.model_type!r} is already registered: "
                         "one Family per architecture")
    FAMILIES[family.model_type] = family
    return family


def sizes(**kwargs: int) -> Mapping[str, int]:
    """A read-only geometry mapping (config keyword arguments)."""
    return MappingProxyType(dict(kwargs))


# One module per architecture; importing it registers its Family.
from slewguard.models.families import bert, gpt2, llama, qwen2  # noqa: E402, F401
