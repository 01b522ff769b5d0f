"""Structural surgery: remove layers, attention heads, KV groups and FFN channels in place.

The ``Surgeon`` base here does the cuts and finds the modules through the module paths of its
``Family``; each family's file in ``slewguard.models.families`` subclasses it for what the paths
do not say (where the head counts live, fused projections) and registers it in its ``Family``,
which ``surgeon_for`` finds by ``config.model_type``. Every cut slices the
weights of the affected projections (nothing is masked) and keeps ``model.config`` in sync:
the dense reference widths stay in the usual fields (``num_attention_heads``,
``num_key_value_heads``, ``intermediate_size``/``n_inner``) and the per-layer widths after
pruning go to ``config.slewguard_layer_heads``, ``slewguard_layer_kv_heads`` and
``slewguard_layer_intermediate`` so that ``slewguard.models.export`` can rebuild the model.

Removing every head, KV group or FFN channel of a layer raises ValueError (the reshapes inside
the attention and GPT-2's Conv1D use ``-1`` and fail on empty tensors): remove the layer instead.

Example:
    >>> from slewguard.models.backbones import tiny_config
    >>> from slewguard.models.families import FAMILIES
    >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))  # 2 layers of 4 heads
    >>> surgeon = surgeon_for(model)
    >>> surgeon.remove_layers(model, [1])
    >>> surgeon.remove_heads(model, layer=0, heads=[1])
    >>> model.config.num_hidden_layers, model.config.slewguard_layer_heads
    (1, [3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

if TYPE_CHECKING:  # the family files import this module
    from slewguard.models.families import Family

Axis = Literal["out", "in"]


def family_of(config: object) -> str:
    """The surgery family of a config: its ``model_type`` (pruned models keep the family's own).

    Example:
        >>> from transformers import BertConfig
        >>> family_of(BertConfig())
        'bert'
    """
    return config.model_type


def slice_projection(module: nn.Module, index: torch.Tensor, axis: Axis) -> None:
    """Keep only ``index`` output features (``axis="out"``) or input features (``"in"``), in place.

    Works for ``nn.Linear`` (weight ``(out, in)``) and GPT-2's ``Conv1D`` (weight ``(in, out)``).
    Unlike transformers' ``prune_linear_layer`` it keeps dtype, device and module identity (hooks,
    wrappers) and does not allocate and initialise a new dense layer first.

    Example:
        >>> up_proj = nn.Linear(4, 3)
        >>> slice_projection(up_proj, torch.tensor([0, 2]), "out")
        >>> up_proj.weight.shape, up_proj.bias.shape, up_proj.out_features
        (torch.Size([2, 4]), torch.Size([2]), 2)
    """
    _check_sliceable([module])
    transposed = isinstance(module, Conv1D)
    dim = {("out", False): 0, ("in", False): 1, ("out", True): 1, ("in", True): 0}[axis, transposed]
    index = index.to(module.weight.device)
    weight = module.weight.detach().index_select(dim, index).clone()
    module.weight = nn.Parameter(weight, requires_grad=module.weight.requires_grad)
    if axis == "out" and module.bias is not None:
        bias = module.bias.detach().index_select(0, index).clone()
        module.bias = nn.Parameter(bias, requires_grad=module.bias.requires_grad)
    if transposed:
        module.nx, module.nf = weight.shape
    else:
        module.out_features, module.in_features = weight.shape


def _check_sliceable(modules: Sequence[nn.Module | None]) -> None:
    for module in modules:
        if module is not None and not isinstance(module, nn.Linear | Conv1D):
            raise ValueError(f"module={type(module).__name__} is not nn.Linear or Conv1D: cannot "
                             "slice it (LoRA attached? merge_and_unload before cutting)")


def _kept(total: int, removed: Sequence[int], what: str, layer: int) -> list[int]:
    removed_set = {int(i) for i in removed}
    bad = sorted(i for i in removed_set if not 0 <= i < total)
    if bad or len(removed_set) != len(removed):
        raise ValueError(f"{what}={list(removed)} in layer {layer}: indices must be unique and in "
                         f"[0, {total}); pass indices of the current (already pruned) layer")
    return [i for i in range(total) if i not in removed_set]


def _rows(units: Sequence[int], size: int) -> torch.Tensor:
    """Feature indices of whole units (heads) of ``size`` features each."""
    units_t = torch.as_tensor(list(units), dtype=torch.long)
    return (units_t[:, None] * size + torch.arange(size)[None, :]).reshape(-1)


class Surgeon:
    """Cuts for one architecture ``family`` (its ``Family``, whose module paths name the modules);
    subclasses say where the head counts live (``head_dim``, ``attention_units``, ``_set_heads``),
    the base does the rest.

    Indices are those of the current (already pruned) model. Every cut updates ``model.config``.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["llama"].model_class(tiny_config("llama"))
        >>> surgeon = surgeon_for(model)
        >>> surgeon.attention_units(model, 0), surgeon.kv_groups(model, 0)
        (4, 2)
        >>> surgeon.remove_heads(model, 0, [0, 2])  # one per KV group
        >>> surgeon.remove_ffn_channels(model, 0, range(48))
        >>> surgeon.attention_units(model, 0), surgeon.kv_groups(model, 0)
        (2, 2)
        >>> surgeon.ffn_channels(model, 0), model.config.slewguard_layer_intermediate
        (16, [16, 64])
    """

    def __init__(self, family: Family) -> None:
        self.family = family

    @property
    def gqa(self) -> bool:
        """True when query heads share K/V heads in groups (the family's ``gqa``)."""
        return self.family.gqa

    def layers(self, model: nn.Module) -> nn.ModuleList:
        """The model's stack of transformer layers."""
        return self.family.layer_stack(model)

    def modules(self, model: nn.Module, layer: int) -> dict[str, nn.Module]:
        """Projections of a layer: q, k, v, o, ffn_in, (ffn_gate,) ffn_out, layer, attention.

        From the family's paths: ``ffn_in`` is the last of its ``ffn_in`` (fc or up),
        ``ffn_gate`` the first where the FFN is gated; ``attention`` holds the value projection.
        """
        family, block = self.family, self.layers(model)[layer]
        ffn_in = [family.module(block, path) for path in family.ffn_in]
        mods = {"q": family.module(block, family.query), "k": family.module(block, family.key),
                "v": family.module(block, family.value),
                "o": family.module(block, family.out_proj), "ffn_in": ffn_in[-1]}
        if family.gated_ffn:
            mods["ffn_gate"] = ffn_in[0]
        return {**mods, "ffn_out": family.module(block, family.ffn_out), "layer": block,
                "attention": self.attention_module(model, layer)}

    def attention_module(self, model: nn.Module, layer: int) -> nn.Module:
        """The attention module of a layer: the one holding the value projection."""
        block = self.layers(model)[layer]
        return self.family.module(block, self.family.value.rpartition(".")[0])

    def head_dim(self, model: nn.Module, layer: int) -> int:
        """Features per head (never changed by pruning)."""
        raise NotImplementedError

    def attention_units(self, model: nn.Module, layer: int) -> int:
        """Prunable attention units: heads (MHA) or query heads (GQA)."""
        raise NotImplementedError

    def kv_groups(self, model: nn.Module, layer: int) -> int:
        """Key/value heads; equal to the heads for MHA."""
        return self.attention_units(model, layer)

    def _set_heads(self, model: nn.Module, layer: int, n_heads: int, n_kv: int) -> None:
        raise NotImplementedError

    def _slice_qkv(self, model: nn.Module, layer: int, q_rows: torch.Tensor,
                   kv_rows: torch.Tensor) -> None:
        mods = self.modules(model, layer)
        slice_projection(mods["q"], q_rows, "out")
        slice_projection(mods["k"], kv_rows, "out")
        slice_projection(mods["v"], kv_rows, "out")

    def num_layers(self, model: nn.Module) -> int:
        """Number of transformer layers."""
        return len(self.layers(model))

    def ffn_channels(self, model: nn.Module, layer: int) -> int:
        """FFN intermediate width of a layer."""
        return int(self.projections(model, layer)["ffn_out"].shape[1])

    def projections(self, model: nn.Module, layer: int, attr: str = "weight"
                    ) -> dict[str, torch.Tensor | None]:
        """Weights (or ``attr="grad"``) in ``nn.Linear`` layout ``(out, in)`` as views.

        Keys: q ``(heads*hd, E)``, k, v ``(kv*hd, E)``, o ``(E, heads*hd)``, ffn_in ``(I, E)``,
        ffn_gate ``(I, E)`` or None, ffn_out ``(E, I)``.
        """
        if attr not in ("weight", "grad"):
            raise ValueError(f"attr={attr!r} must be 'weight' or 'grad'")
        mods = self.modules(model, layer)

        def get(name: str) -> torch.Tensor | None:
            if mods.get(name) is None:
                return None
            weight = mods[name].weight
            tensor = weight if attr == "weight" else weight.grad
            if tensor is None:
                return None
            return tensor.T if isinstance(mods[name], Conv1D) else tensor

        return {name: get(name) for name in ("q", "k", "v", "o", "ffn_in", "ffn_gate", "ffn_out")}

    def remove_layers(self, model: nn.Module, layers: Sequence[int]) -> None:
        """Delete whole layers; renumbers ``layer_idx`` and updates config (layer_types too)."""
        n = self.num_layers(model)
        kept = _kept(n, layers, "layers", -1)
        if not kept:
            raise ValueError(f"layers={list(layers)} would remove all {n} layers: "
                             "keep at least one")
        stack = self.layers(model)
        blocks = [stack[i] for i in kept]
        del stack[:]
        stack.extend(blocks)
        for new_idx, block in enumerate(blocks):
            for sub in block.modules():
                if hasattr(sub, "layer_idx"):  # caches and attention index layers by it
                    sub.layer_idx = new_idx
        layer_types = getattr(model.config, "layer_types", None)
        if isinstance(layer_types, list) and len(layer_types) == n:
            model.config.layer_types = [layer_types[i] for i in kept]
        self.sync_config(model)

    def remove_heads(self, model: nn.Module, layer: int, heads: Sequence[int]) -> None:
        """Remove query heads (MHA: heads with their k/v). GQA: every KV group keeps equal heads;
        a group that loses all its heads goes with its k/v rows."""
        n_heads, n_kv = self.attention_units(model, layer), self.kv_groups(model, layer)
        kept = _kept(n_heads, heads, "heads", layer)
        if not kept:
            raise ValueError(f"heads={list(heads)} removes all {n_heads} heads of layer {layer}: "
                             "remove the layer with remove_layers instead")
        if not self.gqa:
            self._cut_attention(model, layer, kept, kept)
            return
        per_group = n_heads // n_kv
        groups = {g: [h for h in kept if h // per_group == g] for g in range(n_kv)}
        groups = {g: hs for g, hs in groups.items() if hs}
        sizes = {len(hs) for hs in groups.values()}
        if len(sizes) != 1:
            raise ValueError(
                f"heads={list(heads)} in GQA layer {layer} would leave unequal query heads per KV "
                f"group ({ {g: len(hs) for g, hs in groups.items()} }): remove the same number of "
                f"heads from every group of {per_group}, or whole groups with remove_kv_groups")
        self._cut_attention(model, layer, [h for hs in groups.values() for h in hs], list(groups))

    def remove_kv_groups(self, model: nn.Module, layer: int, groups: Sequence[int]) -> None:
        """Remove KV groups with all their query heads (MHA: same as remove_heads)."""
        if not self.gqa:
            self.remove_heads(model, layer, groups)
            return
        n_heads, n_kv = self.attention_units(model, layer), self.kv_groups(model, layer)
        kept = _kept(n_kv, groups, "groups", layer)
        if not kept:
            raise ValueError(f"groups={list(groups)} removes all {n_kv} KV groups of layer "
                             f"{layer}: remove the layer with remove_layers instead")
        per_group = n_heads // n_kv
        heads = [g * per_group + i for g in kept for i in range(per_group)]
        self._cut_attention(model, layer, heads, kept)

    def _cut_attention(self, model: nn.Module, layer: int, heads: list[int], kv: list[int]) -> None:
        mods = self.modules(model, layer)
        _check_sliceable([mods[name] for name in ("q", "k", "v", "o")])  # all or nothing
        hd = self.head_dim(model, layer)
        q_rows, kv_rows = _rows(heads, hd), _rows(kv, hd)
        self._slice_qkv(model, layer, q_rows, kv_rows)
        slice_projection(self.modules(model, layer)["o"], q_rows, "in")
        self._set_heads(model, layer, len(heads), len(kv))
        self.sync_config(model)

    def remove_ffn_channels(self, model: nn.Module, layer: int, channels: Sequence[int]) -> None:
        """Remove FFN channels: ffn_in (and gate) rows with the matching ffn_out columns."""
        kept = _kept(self.ffn_channels(model, layer), channels, "channels", layer)
        if not kept:
            raise ValueError(f"channels={len(channels)} indices remove every FFN channel of layer "
                             f"{layer}: remove the layer with remove_layers instead")
        index = torch.as_tensor(kept, dtype=torch.long)
        mods = self.modules(model, layer)
        _check_sliceable([mods.get(name) for name in ("ffn_in", "ffn_gate", "ffn_out")])
        for name in ("ffn_in", "ffn_gate"):
            if mods.get(name) is not None:
                slice_projection(mods[name], index, "out")
        slice_projection(mods["ffn_out"], index, "in")
        self._set_ffn(model, layer, len(kept))
        self.sync_config(model)

    def _set_ffn(self, model: nn.Module, layer: int, channels: int) -> None:
        """Record the width on the FFN module where the family keeps it (default: nowhere)."""

    def sync_config(self, model: nn.Module) -> None:
        """Write the per-layer widths of the modules into ``model.config``."""
        n = self.num_layers(model)
        config = model.config
        config.num_hidden_layers = n
        config.slewguard_layer_heads = [self.attention_units(model, i) for i in range(n)]
        config.slewguard_layer_kv_heads = [self.kv_groups(model, i) for i in range(n)]
        config.slewguard_layer_intermediate = [self.ffn_channels(model, i) for i in range(n)]


def surgeon_for(model: nn.Module) -> Surgeon:
    """The surgeon for a model's family (``config.model_type``), from ``slewguard.models.families``.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["gpt2"].model_class(tiny_config("gpt2"))
        >>> type(surgeon_for(model)).__name__, surgeon_for(model).num_layers(model)
        ('GPT2Surgeon', 2)
    """
    # Imported here: the family files import Surgeon from this module.
    from slewguard.models.families import FAMILIES

    family = family_of(model.config)
    if family not in FAMILIES:
        raise ValueError(f"model.config.model_type={family!r} has no surgeon; supported: "
                         f"{', '.join(FAMILIES)} (add a family file with its Surgeon in "
                         "slewguard/models/families)")
    return FAMILIES[family].surgeon(FAMILIES[family])
