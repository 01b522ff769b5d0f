"""Ratio targeting, shared by the cascade and the one-shot baselines: what one removable unit
(layer, head, KV group, FFN channel) costs in body parameters, how many may go, which go.

A stage's removal budget is in parameters; units are picked weakest first across layers by
layer-normalised importance until the budget is spent, and ``check_reachable`` says up front
whether a target ratio can be reached at all.

Example:
    >>> from slewguard.models.backbones import tiny_config
    >>> from slewguard.models.families import FAMILIES
    >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))  # 2 layers of 4 heads
    >>> surgeon = FAMILIES["bert"].surgeon(FAMILIES["bert"])
    >>> calib = [{"input_ids": torch.randint(4, 64, (4, 8))}]
    >>> goal = check_reachable(surgeon, model, 1.5, coupled=False)
    >>> cut = prune_stage(surgeon, model, Stage.HEADS, "l1", calib, goal, goal, False)
    >>> [r.unit.value for r in cut], sum(len(r.indices) for r in cut)  # 1,048 parameters each
    (['head', 'head'], 5)
    >>> goal, measure.body_parameters(model)  # within half a head of the goal
    (11392, 11848)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch

from slewguard.models.prune import measure
from slewguard.models.prune.importance import importance
from slewguard.models.prune.kinds import Removal, Stage, Unit
from slewguard.models.prune.surgery import Surgeon
from slewguard.models.train import Batch


def granularity(surgeon: Surgeon, stage: Stage, coupled: bool) -> Unit:
    """The unit a stage removes: layer, head, kv_group (GQA, coupling-aware) or channel.

    Example:
        >>> from slewguard.models.families import FAMILIES
        >>> llama, bert = (FAMILIES[k].surgeon(FAMILIES[k]) for k in ("llama", "bert"))
        >>> granularity(llama, Stage.HEADS, coupled=True), granularity(bert, "heads", coupled=True)
        (<Unit.KV_GROUP: 'kv_group'>, <Unit.HEAD: 'head'>)
    """
    try:  # plain text ("heads") is a Stage too; anything else gets a clear error
        stage = Stage(stage)
    except ValueError:
        raise ValueError(f"stage={stage!r} is not one of layers, heads, channels") from None
    if stage == Stage.LAYERS:
        return Unit.LAYER
    if stage == Stage.CHANNELS:
        return Unit.CHANNEL
    return Unit.KV_GROUP if coupled and surgeon.gqa else Unit.HEAD


def _gqa_heads(surgeon: Surgeon, model: torch.nn.Module, layer: int) -> int:
    """Query heads per KV group when per-head removal must stay balanced (GQA), else 0."""
    heads, kv = surgeon.attention_units(model, layer), surgeon.kv_groups(model, layer)
    return heads // kv if surgeon.gqa and heads != kv else 0


def unit_cost(surgeon: Surgeon, model: torch.nn.Module, layer: int, unit: Unit) -> int:
    """Body parameters one removable unit of ``layer`` takes with it (a GQA head slot = one
    query head from every KV group).

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))  # 2 layers, body 17,088
        >>> surgeon = FAMILIES["bert"].surgeon(FAMILIES["bert"])
        >>> [unit_cost(surgeon, model, 0, unit) for unit in (Unit.LAYER, Unit.HEAD, Unit.CHANNEL)]
        [8544, 1048, 65]
    """
    if unit == Unit.LAYER:
        return sum(p.numel() for p in surgeon.layers(model)[layer].parameters())
    mods, proj = surgeon.modules(model, layer), surgeon.projections(model, layer)
    bias = {k: int(getattr(mods.get(k), "bias", None) is not None) for k in mods}
    if unit == Unit.CHANNEL:
        rows = [k for k in ("ffn_in", "ffn_gate") if proj.get(k) is not None]
        return sum(proj[k].shape[1] + bias[k] for k in rows) + proj["ffn_out"].shape[0]
    hd = surgeon.head_dim(model, layer)
    query = hd * (proj["q"].shape[1] + bias["q"]) + hd * proj["o"].shape[0]
    key_value = 2 * hd * (proj["k"].shape[1] + bias["k"])
    kv, per_group = surgeon.kv_groups(model, layer), _gqa_heads(surgeon, model, layer)
    if unit == Unit.KV_GROUP:
        return (surgeon.attention_units(model, layer) // kv) * query + key_value
    return kv * query if per_group else query + key_value


def capacity(surgeon: Surgeon, model: torch.nn.Module, layer: int, unit: Unit) -> int:
    """How many units of ``layer`` may go (one head / KV group / channel always stays)."""
    if unit == Unit.CHANNEL:
        return surgeon.ffn_channels(model, layer) - 1
    if unit == Unit.KV_GROUP:
        return surgeon.kv_groups(model, layer) - 1
    per_group = _gqa_heads(surgeon, model, layer)
    return per_group - 1 if per_group else surgeon.attention_units(model, layer) - 1


def removable(surgeon: Surgeon, model: torch.nn.Module, units: Sequence[Unit],
              layers: Sequence[int] | None = None) -> int:
    """Body parameters the given unit kinds could still remove from ``layers`` (default: all)."""
    layers = range(surgeon.num_layers(model)) if layers is None else layers
    return sum(capacity(surgeon, model, i, u) * unit_cost(surgeon, model, i, u)
               for i in layers for u in units)


def check_reachable(surgeon: Surgeon, model: torch.nn.Module, target_ratio: float,
                    coupled: bool) -> int:
    """The goal body size for ``target_ratio``; ValueError naming the maximum reachable ratio.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))  # 2 layers, body 17,088
        >>> surgeon = FAMILIES["bert"].surgeon(FAMILIES["bert"])
        >>> check_reachable(surgeon, model, 2.0, coupled=False)
        8544
        >>> check_reachable(surgeon, model, 10.0, coupled=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: target_ratio=10 is unreachable: ... reaches at most 6.55x; ...
    """
    dense = measure.body_parameters(model)
    n = surgeon.num_layers(model)
    ends = sorted({0, n - 1})
    units = (granularity(surgeon, Stage.HEADS, coupled), Unit.CHANNEL)
    smallest = sum(unit_cost(surgeon, model, i, Unit.LAYER) for i in ends) - removable(
        surgeon, model, units, ends)
    reachable = dense / smallest
    if target_ratio > reachable:
        raise ValueError(f"target_ratio={target_ratio:g} is unreachable: removing everything "
                         f"prunable (all layers but the first and last, all but one head/KV "
                         f"group and one FFN channel per layer) reaches at most "
                         f"{reachable:.2f}x; pass target_ratio <= {reachable:.2f}")
    return round(dense / target_ratio)


def _per_unit_scores(surgeon: Surgeon, model: torch.nn.Module, layer: int, unit: Unit,
                     scores: torch.Tensor) -> torch.Tensor:
    """Sorted scores of the removable units of a layer, normalised by the layer's mean so that
    layers compare; a GQA head slot scores the r-th weakest head of every group together."""
    scores = scores.float() / scores.float().abs().mean().clamp_min(1e-12)
    per_group = _gqa_heads(surgeon, model, layer) if unit == Unit.HEAD else 0
    if per_group:
        return scores.view(-1, per_group).sort(dim=1).values.sum(0)
    return scores.sort().values


def select_counts(surgeon: Surgeon, model: torch.nn.Module, unit: Unit,
                  scores: Sequence[torch.Tensor], budget: int, minimum: int = 0) -> dict[int, int]:
    """How many of the weakest units to remove per layer so that about ``budget`` parameters go
    (and at least ``minimum``): global order of layer-normalised scores, stopping where one more
    unit would overshoot."""
    candidates = []
    for layer, layer_scores in enumerate(scores):
        cost = unit_cost(surgeon, model, layer, unit)
        ordered = _per_unit_scores(surgeon, model, layer, unit, layer_scores)
        cap = capacity(surgeon, model, layer, unit)
        candidates += [(float(v), layer, cost) for v in ordered[:cap]]
    counts: dict[int, int] = {}
    removed = 0
    for _, layer, cost in sorted(candidates, key=lambda c: c[0]):
        if removed + cost / 2 >= budget and removed >= minimum:
            break
        counts[layer] = counts.get(layer, 0) + 1
        removed += cost
    return counts


def apply_counts(surgeon: Surgeon, model: torch.nn.Module, unit: Unit,
                 scores: Sequence[torch.Tensor], counts: dict[int, int]) -> list[Removal]:
    """Remove the ``counts[layer]`` weakest units of each layer; returns one removal per layer,
    in layer order."""
    removed: list[Removal] = []
    for layer, count in sorted(counts.items()):
        layer_scores = scores[layer].float()
        per_group = _gqa_heads(surgeon, model, layer) if unit == Unit.HEAD else 0
        if per_group:  # the `count` weakest heads of every KV group
            order = layer_scores.view(-1, per_group).argsort(dim=1)[:, :count]
            offsets = torch.arange(order.shape[0])[:, None] * per_group
            index = sorted((order + offsets).reshape(-1).tolist())
        else:
            index = sorted(layer_scores.argsort()[:count].tolist())
        remove = {Unit.HEAD: surgeon.remove_heads, Unit.KV_GROUP: surgeon.remove_kv_groups,
                  Unit.CHANNEL: surgeon.remove_ffn_channels}[unit]
        remove(model, layer, index)
        removed.append(Removal(unit, layer, index))
    return removed


def select_layers(surgeon: Surgeon, model: torch.nn.Module, scores: torch.Tensor,
                  stage_goal: int, goal_body: int, later_units: Sequence[Unit]) -> list[int]:
    """Weakest layers first (never the first or the last) until the body is nearest
    ``stage_goal``; more while the later stages could not reach ``goal_body`` from what is left."""
    body = measure.body_parameters(model)
    later = removable(surgeon, model, later_units)
    chosen: list[int] = []
    for layer in sorted(range(1, surgeon.num_layers(model) - 1), key=lambda i: float(scores[i])):
        cost = unit_cost(surgeon, model, layer, Unit.LAYER)
        if body - later <= goal_body and body - cost / 2 < stage_goal:
            break
        chosen.append(layer)
        body -= cost
        later -= removable(surgeon, model, later_units, [layer])
    return sorted(chosen)


def prune_stage(surgeon: Surgeon, model: torch.nn.Module, stage: Stage, criterion: str,
                calib: Sequence[Batch], stage_goal: int, goal_body: int,
                coupled: bool, later_stages: Collection[Stage] | None = None
                ) -> list[Removal]:
    """Score the stage's units on the current model with ``criterion`` and remove the weakest so
    that the body lands near ``stage_goal`` (and ``goal_body`` stays reachable by the stages in
    ``later_stages``, default those after ``stage`` in layers, heads, channels). Returns what
    went ([] when nothing did).

    Example:
        >>> from slewguard.models.backbones import model_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["bert"].model_class(model_config(
        ...     "tiny-bert", 64, 2, 0, sizes={"num_hidden_layers": 4}))  # body 34,176
        >>> surgeon = FAMILIES["bert"].surgeon(FAMILIES["bert"])
        >>> calib = [{"input_ids": torch.randint(4, 64, (4, 8))}]
        >>> prune_stage(surgeon, model, Stage.LAYERS, "lcr", calib, 17088, 17088, coupled=False)
        [Removal(unit=<Unit.LAYER: 'layer'>, layer=None, indices=(1, 2))]
    """
    body = measure.body_parameters(model)
    unit = granularity(surgeon, stage, coupled)
    if later_stages is None:
        order = tuple(Stage)
        later_stages = order[order.index(stage) + 1:]
    later = tuple(granularity(surgeon, s, coupled) for s in later_stages if s != Stage.LAYERS)
    need = body - goal_body - removable(surgeon, model, later)
    if stage == Stage.LAYERS:
        if body <= stage_goal and need <= 0:
            return []
        scores = importance(criterion, Unit.LAYER).score(model, calib)
        layers = select_layers(surgeon, model, scores, stage_goal, goal_body, later)
        if layers:
            surgeon.remove_layers(model, layers)
        return [Removal(Unit.LAYER, None, layers)] if layers else []
    budget = max(body - stage_goal, need)
    if budget <= 0:
        return []
    scores = importance(criterion, unit).score(model, calib)
    counts = select_counts(surgeon, model, unit, scores, budget, minimum=need)
    return apply_counts(surgeon, model, unit, scores, counts)
