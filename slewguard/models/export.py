"""Save and load pruned models whose layers have different widths, as plain transformers dirs.

``save_pruned`` writes ``config.json`` (the dense reference widths in the usual fields plus
``slewguard_layer_heads`` / ``slewguard_layer_kv_heads`` / ``slewguard_layer_intermediate``)
and ``model.safetensors`` holding only the kept weights. ``model_type`` stays the family's own
(``bert``, ``gpt2``, ``llama``, ``qwen2``) so that every tool that reads it keeps working.

Importing this module registers, for each family in ``slewguard.models.families``, a subclass
of the family's ``*ForSequenceClassification`` with ``AutoModelForSequenceClassification``: it
builds the dense layers from the config and then cuts them to the recorded per-layer widths (on
the meta device when transformers loads, so nothing dense is allocated). Without per-layer
widths in the config it is exactly the stock class. Hence, after ``import slewguard.models.export``,
``AutoModelForSequenceClassification.from_pretrained(path)`` loads pruned dirs too.

Example:
    >>> import tempfile
    >>> from slewguard.models.backbones import tiny_config
    >>> model = FAMILIES["llama"].model_class(tiny_config("llama"))  # FFN 64 wide
    >>> surgeon_for(model).remove_ffn_channels(model, 0, range(48))
    >>> with tempfile.TemporaryDirectory() as path:
    ...     save_pruned(model, path)
    ...     again = load_model(path)
    >>> [layer.mlp.down_proj.in_features for layer in again.model.layers]
    [16, 64]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from slewguard.models.families import FAMILIES
from slewguard.models.prune.surgery import surgeon_for

WIDTH_FIELDS = ("slewguard_layer_heads", "slewguard_layer_kv_heads", "slewguard_layer_intermediate")


def apply_widths(model: nn.Module) -> None:
    """Cut a freshly built dense model down to the per-layer widths in its config (in place).

    The last heads / groups / channels go; what they held does not matter because the saved
    weights are loaded afterwards. No-op when the config records no per-layer widths.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> config = tiny_config("bert")  # 2 layers of 4 heads, FFN 64
        >>> config.slewguard_layer_heads = config.slewguard_layer_kv_heads = [4, 2]
        >>> config.slewguard_layer_intermediate = [64, 16]
        >>> model = FAMILIES["bert"].model_class(config)  # the stock class builds it dense
        >>> apply_widths(model)
        >>> surgeon_for(model).attention_units(model, 1), surgeon_for(model).ffn_channels(model, 1)
        (2, 16)
    """
    config = model.config
    targets = [getattr(config, name, None) for name in WIDTH_FIELDS]
    if all(t is None for t in targets):
        return
    surgeon = surgeon_for(model)
    n_layers = surgeon.num_layers(model)
    if any(t is None or len(t) != n_layers for t in targets):
        raise ValueError(f"config {WIDTH_FIELDS} = {targets} must all list num_hidden_layers="
                         f"{n_layers} widths: save the model with save_pruned")
    targets = [list(t) for t in targets]  # every cut rewrites the config fields
    for layer, (heads, kv, channels) in enumerate(zip(*targets, strict=True)):
        _cut_heads(surgeon, model, layer, heads, kv)
        now_channels = surgeon.ffn_channels(model, layer)
        if channels < now_channels:
            surgeon.remove_ffn_channels(model, layer, range(channels, now_channels))
    surgeon.sync_config(model)


def _cut_heads(surgeon: Any, model: nn.Module, layer: int, heads: int, kv: int) -> None:
    now_heads, now_kv = surgeon.attention_units(model, layer), surgeon.kv_groups(model, layer)
    if not surgeon.gqa:
        if heads < now_heads:
            surgeon.remove_heads(model, layer, range(heads, now_heads))
        return
    if kv < now_kv:
        surgeon.remove_kv_groups(model, layer, range(kv, now_kv))
    per_group_now, per_group = now_heads // now_kv, heads // kv
    if per_group < per_group_now:
        surgeon.remove_heads(model, layer, [g * per_group_now + i for g in range(kv)
                                            for i in range(per_group, per_group_now)])


def _pruned_class(base: type[PreTrainedModel]) -> type[PreTrainedModel]:
    def __init__(self, config, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        base.__init__(self, config, *args, **kwargs)
        apply_widths(self)

    # Same class name as the stock class, so a re-save writes the stock "architectures" entry.
    return type(base.__name__, (base,), {"__init__": __init__, "__module__": __name__,
                                         "__doc__": f"{base.__name__} with per-layer widths."})


PRUNED_CLASSES: dict[str, type[PreTrainedModel]] = {
    model_type: _pruned_class(family.model_class) for model_type, family in FAMILIES.items()
}


def register() -> None:
    """Map each family's config to its width-aware class in AutoModelForSequenceClassification.

    Idempotent; runs on import of this module.

    Example:
        >>> register()
    """
    for model_type, family in FAMILIES.items():
        AutoModelForSequenceClassification.register(family.config_class,
                                                    PRUNED_CLASSES[model_type], exist_ok=True)


def save_pruned(model: PreTrainedModel, path: str | Path, tokenizer: Any = None) -> None:
    """Write the (pruned or dense) model, and the tokenizer if given, to directory ``path``.

    Example:
        >>> import json, tempfile
        >>> from slewguard.models.backbones import build
        >>> bb = build("tiny-gpt2", num_labels=2, vocabulary=["rms", "high"])
        >>> surgeon_for(bb.model).remove_heads(bb.model, 0, [1, 2])
        >>> with tempfile.TemporaryDirectory() as path:
        ...     save_pruned(bb.model, path, bb.tokenizer)
        ...     config = json.loads((Path(path) / "config.json").read_text())
        ...     print(config["slewguard_layer_heads"], (Path(path) / "tokenizer.json").is_file())
        [2, 4] True
    """
    if not isinstance(model, PreTrainedModel):
        raise ValueError(f"model={type(model).__name__} is not a transformers PreTrainedModel: "
                         "merge LoRA adapters first (merge_and_unload) and pass the plain model")
    surgeon_for(model).sync_config(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def load_model(path: str | Path, **kwargs: Any) -> PreTrainedModel:
    """Load a directory written by ``save_pruned`` (or a dense ``save_pretrained`` one).

    ``kwargs`` go to ``from_pretrained`` (e.g. ``dtype=torch.bfloat16``, ``device_map``).

    Example:
        >>> import tempfile, torch
        >>> from slewguard.models.backbones import tiny_config
        >>> model = FAMILIES["qwen2"].model_class(tiny_config("qwen2"))
        >>> with tempfile.TemporaryDirectory() as path:
        ...     save_pruned(model, path)
        ...     again = load_model(path, dtype=torch.bfloat16)
        >>> type(again).__name__, again.dtype, again.training
        ('Qwen2ForSequenceClassification', torch.bfloat16, False)
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"path={str(path)!r} has no config.json: pass a directory written by "
                         "save_pruned")
    register()
    kwargs.setdefault("local_files_only", True)
    return AutoModelForSequenceClassification.from_pretrained(path, **kwargs).eval()


register()
