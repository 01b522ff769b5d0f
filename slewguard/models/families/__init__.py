"""Model families: one file per architecture, registered here under its ``config.model_type``.

A ``Family`` holds what slewguard needs to know about an architecture: its transformers config
and ``*ForSequenceClassification`` classes, its pruning ``Surgeon``, the geometry of its tiny
random test model (and of its from-scratch model, where it has one), the module paths of its
layer stack, attention and FFN (what surgery cuts, what the SIA check masks, what LoRA adapts),
its classifier head, and the backbone names ``--family`` accepts for it (with the loader of its
shipped weights, where it has some).

Every module of this package is imported here, in name order (``_``-prefixed ones excepted), and
each calls ``register`` with its ``Family``: a new architecture is one new file, nothing else.
``train --family`` reads its choices from the same files without importing them
(``slewguard.models.family_names``), so ``model_type``, ``backbones`` and ``pretrained`` must
be written out in the file's ``Family(...)`` call.

Example:
    >>> {"bert", "gpt2", "llama", "qwen2"} <= set(FAMILIES)
    True
    >>> llama = FAMILIES["llama"]
    >>> llama.gqa, llama.ffn_in, llama.head, llama.backbones
    (True, ('mlp.gate_proj', 'mlp.up_proj'), ('score',), ('llama', 'smollm2'))
    >>> model = llama.model_class(llama.config_class(vocab_size=16, **llama.tiny_sizes))
    >>> model.config.model_type, len(llama.layer_stack(model))
    ('llama', 2)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from slewguard.models.family_names import TINY, family_modules

if TYPE_CHECKING:  # the family files import surgery (and backbones, inside their loaders);
    from pathlib import Path  # both find the families at call time

    from slewguard.models.backbones import Backbone
    from slewguard.models.prune.surgery import Surgeon


@dataclass(frozen=True)
class Family:
    """One architecture: its classes and the module paths and sizes that differ between families.

    Module paths are dotted attribute paths: ``layers`` from the classification model to its
    ``nn.ModuleList`` of transformer layers, the others from one such layer. The ``Surgeon``
    finds its modules through them (``slewguard.models.prune.surgery``).

    ``backbones`` are the names ``--family`` accepts besides ``tiny-<model_type>``: the first is
    the backbone's own name, the others aliases of it. ``pretrained`` loads that backbone's
    shipped weights; without it the name is a random model of ``scratch_sizes``.
    """

    model_type: str
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    surgeon: type[Surgeon]              # its structural cuts (slewguard.models.prune.surgery)
    tiny_sizes: Mapping[str, int]       # config kwargs of the 2-layer random test model
    layers: str                         # model -> stack of layers
    query: str                          # layer -> module whose output holds Q
    key: str                            # layer -> module whose output holds K
    value: str                          # layer -> module whose output holds V (in the attention)
    out_proj: str                       # layer -> module whose input is the concatenated heads
    ffn_in: tuple[str, ...]             # layer -> (fc,) or (gate, up)
    ffn_out: str                        # layer -> FFN down projection
    head: tuple[str, ...]               # classifier head modules (train in full under LoRA)
    scratch_sizes: Mapping[str, int] | None = None  # from-scratch geometry, None: none offered
    backbones: tuple[str, ...] = ()     # its `--family` names (first: own name, then aliases)
    # builds backbones[0] from shipped weights: (num_labels, cache_dir) -> Backbone
    pretrained: Callable[[int, Path | None], Backbone] | None = None
    gqa: bool = False                   # query heads share K/V heads in groups
    conv1d: bool = False                # GPT-2 Conv1D: weights (in, out), q|k|v fused

    def __post_init__(self) -> None:
        if self.pretrained is not None and not self.backbones:
            raise ValueError(f"model_type={self.model_type!r} has pretrained weights but no "
                             "backbones name to build them by: add backbones=(name, ...)")
        if self.backbones and self.pretrained is None and self.scratch_sizes is None:
            raise ValueError(f"backbones={self.backbones} of model_type={self.model_type!r} "
                             "would build nothing: give pretrained= (a loader) or scratch_sizes=")
        if any(name.startswith(TINY) for name in self.backbones):
            raise ValueError(f"backbones={self.backbones}: {TINY}<model_type> is every family's "
                             "test model already; name the backbone without the prefix")

    @property
    def attention(self) -> tuple[str, ...]:
        """The attention projections LoRA adapts: query, key, value, out_proj (fused ones once)."""
        return tuple(dict.fromkeys((self.query, self.key, self.value, self.out_proj)))

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
        """The module at dotted ``path`` inside one layer ``block`` (``""``: the block)."""
        return _resolve(block, path)


def _resolve(root: nn.Module, path: str) -> nn.Module:
    module = root
    for name in filter(None, path.split(".")):
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
    taken = {name: other.model_type for other in FAMILIES.values() for name in other.backbones}
    clash = {name: taken[name] for name in family.backbones if name in taken}
    if clash:
        raise ValueError(f"backbones={family.backbones} of model_type={family.model_type!r}: "
                         f"{clash} already name other families' backbones")
    FAMILIES[family.model_type] = family
    return family


def sizes(**kwargs: int) -> Mapping[str, int]:
    """A read-only geometry mapping (config keyword arguments)."""
    return MappingProxyType(dict(kwargs))


def _import_all() -> None:
    """Import every family module here (name order); each registers its Family."""
    for name in family_modules(__path__):
        importlib.import_module(f"{__name__}.{name}")


_import_all()
