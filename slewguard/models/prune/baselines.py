"""Baselines for the cascade, through the same surgery and the same ratio targeting.

- ``magnitude``: one-shot L1 weight magnitude, heads and FFN channels at once, no recovery.
- ``wanda``: one-shot Wanda-style |W| * ||X|| on heads and channels, no recovery (Wanda-sp/FLAP).
- ``taylor-lora``: LLM-Pruner style: one first-order Taylor scoring pass on the dense model, every
  head and channel removed at once, then one LoRA recovery as long as the cascade's three.
- ``shortgpt``: layers only, by block influence (1 - cos(h_in, h_out)), no recovery; a layer is
  coarse, so the ratio lands on the nearest whole number of layers (any layer may go).

One-shot head+channel methods split the budget between attention and FFN in proportion to what
each could remove (the same fraction of both), and the channels solve for the exact target.

Example:
    >>> from slewguard.models.backbones import tiny_config
    >>> from slewguard.models.families import FAMILIES
    >>> model = FAMILIES["llama"].model_class(tiny_config("llama"))
    >>> calib = [{"input_ids": torch.randint(4, 64, (8, 10))}]
    >>> model, report = run_baseline("wanda", model, calib, calib, CascadeConfig(target_ratio=2.5))
    >>> report.stages[0].granularity, round(report.final_ratio, 1)  # GQA: whole KV groups
    ('kv_group+channel', 2.5)
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from slewguard.models.prune import measure
from slewguard.models.prune.budget import (
    apply_counts,
    check_reachable,
    granularity,
    removable,
    select_counts,
    unit_cost,
)
from slewguard.models.prune.cascade import CascadeConfig
from slewguard.models.prune.importance import importance
from slewguard.models.prune.kinds import Removal, Stage, Unit
from slewguard.models.prune.stages import (
    CascadeReport,
    Evaluate,
    calibration_subset,
    distillation,
    evaluate_metrics,
    finish_stage,
    resolve_coupling,
)
from slewguard.models.prune.surgery import Surgeon, surgeon_for
from slewguard.models.train import Batch

# method -> (criterion, recovers after pruning)
ONE_SHOT = {"magnitude": ("l1", False), "wanda": ("wanda", False), "taylor-lora": ("taylor", True)}
METHODS = ("cascade", *ONE_SHOT, "shortgpt")


def run_baseline(
    method: str,
    model: torch.nn.Module,
    train_batches: Sequence[Batch],
    calib_batches: Sequence[Batch],
    config: CascadeConfig,
    evaluate: Evaluate | None = None,
) -> tuple[torch.nn.Module, CascadeReport]:
    """Prune ``model`` to ``config.target_ratio`` with a baseline ``method`` (see the module doc).

    ``config`` supplies the ratio, calibration size, LoRA and distillation settings and seed;
    its stage shares and criteria are ignored. Returns the pruned model and a report with one or
    two stages.

    Example:
        >>> from slewguard.models.backbones import model_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["bert"].model_class(model_config(
        ...     "tiny-bert", 64, 2, 0, sizes={"num_hidden_layers": 4}))
        >>> calib = [{"input_ids": torch.randint(4, 64, (8, 10))}]
        >>> model, report = run_baseline("shortgpt", model, calib, calib,
        ...                              CascadeConfig(target_ratio=2.0))
        >>> model.config.num_hidden_layers, report.final_ratio
        (2, 2.0)
    """
    if method not in ONE_SHOT and method != "shortgpt":
        raise ValueError(f"method={method!r} is not a baseline; choose one of "
                         f"{', '.join(METHODS[1:])} (or run_cascade for 'cascade')")
    surgeon = surgeon_for(model)
    dense = measure.body_parameters(model)
    coupled = resolve_coupling(model, config.coupling_aware)
    calib = calibration_subset(calib_batches, config.calibration_samples)
    report = CascadeReport(method, config.target_ratio, dense, coupled,
                           evaluate_metrics(evaluate, model))
    start = time.perf_counter()
    if method == "shortgpt":
        removed = _shortgpt(surgeon, model, calib, round(dense / config.target_ratio))
        model, entry = finish_stage(model, report, Stage.LAYERS, "block_influence", removed, 0,
                                    train_batches, config, evaluate)
    else:
        criterion, recovers = ONE_SHOT[method]
        goal_body = check_reachable(surgeon, model, config.target_ratio, coupled)
        epochs, loss_fn = 0, None
        if recovers:
            epochs = sum(config.epochs(s) for s in Stage)
            loss_fn = distillation(model, train_batches, config)
        removed = _one_shot(surgeon, model, criterion, calib, goal_body, coupled)
        model, entry = finish_stage(model, report, Stage.CHANNELS, criterion, removed, epochs,
                                    train_batches, config, evaluate, loss_fn)
        entry.granularity = f"{granularity(surgeon, Stage.HEADS, coupled)}+{Unit.CHANNEL}"
    entry.seconds = time.perf_counter() - start
    return model, report


def _one_shot(surgeon: Surgeon, model: torch.nn.Module, criterion: str, calib: Sequence[Batch],
              goal_body: int, coupled: bool) -> list[Removal]:
    """Score heads and channels once on the unpruned model, then remove both to ``goal_body``
    (the head removals first, then the channel ones)."""
    head_unit = granularity(surgeon, Stage.HEADS, coupled)
    head_scores = importance(criterion, head_unit).score(model, calib)
    channel_scores = importance(criterion, Unit.CHANNEL).score(model, calib)
    body = measure.body_parameters(model)
    head_room = removable(surgeon, model, (head_unit,))
    channel_room = removable(surgeon, model, (Unit.CHANNEL,))
    head_budget = round((body - goal_body) * head_room / max(head_room + channel_room, 1))
    counts = select_counts(surgeon, model, head_unit, head_scores, head_budget)
    removed = apply_counts(surgeon, model, head_unit, head_scores, counts)
    # channel indices are untouched by head removal, so the dense scores still apply
    budget = measure.body_parameters(model) - goal_body
    counts = select_counts(surgeon, model, Unit.CHANNEL, channel_scores, budget)
    return removed + apply_counts(surgeon, model, Unit.CHANNEL, channel_scores, counts)


def _shortgpt(surgeon: Surgeon, model: torch.nn.Module, calib: Sequence[Batch],
              goal_body: int) -> list[Removal]:
    """Remove the lowest block-influence layers (any, one always stays) nearest ``goal_body``."""
    scores = importance("block_influence", Unit.LAYER).score(model, calib)
    body = measure.body_parameters(model)
    chosen: list[int] = []
    for layer in scores.argsort().tolist()[:-1]:
        cost = unit_cost(surgeon, model, layer, Unit.LAYER)
        if body - cost / 2 < goal_body:
            break
        chosen.append(layer)
        body -= cost
    if chosen:
        surgeon.remove_layers(model, sorted(chosen))
    return [Removal(Unit.LAYER, None, sorted(chosen))] if chosen else []
