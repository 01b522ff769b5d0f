"""Cascaded multi-granularity pruning: layers -> LoRA -> heads -> LoRA -> FFN channels -> LoRA.

Each stage scores its components on the CURRENT model (pruned and recovered by the stages before
it), removes the least important ones with the family's ``Surgeon``, then recovers with LoRA
(``stages.finish_stage``, which the baselines share).
The compression target is a body-parameter ratio (``measure.body_parameters``: embeddings and
head excluded, the paper's count). The removal budget ``dense - dense / target`` is split over
the stages by ``*_share``; coarse stages round to whole layers/heads and the last stage solves
for the exact number of FFN channels, so the result lands within one channel of the target.
A stage also removes more than its share when the later stages could not otherwise reach it.

Beyond the paper, ``distill_weight`` > 0 makes every recovery also match the dense model's
logits, computed once before the first removal (``recovery.distillation_loss``), or, with
``distill_teacher="previous"``, those of the model each stage starts from. ``rounds`` > 1 makes
the cascade iterative: layers, then heads and channels ``rounds`` times, each round with its
part of their shares and recovery epochs.

Coupling-aware (GQA / gated FFN, automatic when the static SIA check says violated): attention is
removed by whole KV groups with their query heads, and gated channels go as gate/up/down triples
scored jointly.

Example:
    >>> from slewguard.models.backbones import tiny_config
    >>> from slewguard.models.families import FAMILIES
    >>> model = FAMILIES["llama"].model_class(tiny_config("llama"))
    >>> batches = [{"input_ids": torch.randint(4, 64, (8, 10)), "labels": torch.arange(8) % 2}]
    >>> config = CascadeConfig(target_ratio=2.5, rounds=1, epoch_scale=0.05, show_progress=False)
    >>> model, report = run_cascade(model, None, batches, batches, config)
    >>> [str(entry.stage) for entry in report.stages], round(report.final_ratio, 1)
    (['layers', 'heads', 'channels'], 2.5)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console

from slewguard.models.prune import measure
from slewguard.models.prune.budget import check_reachable, granularity, prune_stage
from slewguard.models.prune.kinds import Stage
from slewguard.models.prune.recovery import TARGETS
from slewguard.models.prune.stages import (
    CascadeReport,
    Evaluate,
    calibration_subset,
    distillation,
    evaluate_metrics,
    finish_stage,
    resolve_coupling,
)
from slewguard.models.prune.surgery import surgeon_for
from slewguard.models.train import Batch


class CascadeConfig(BaseModel):
    """Everything the cascade needs besides the model and the data.

    The defaults are the settings that measured best (docs/benchmarks.md, with the commands):
    stage shares 0.5/0.2/0.3 beat an equal split and the other splits tried on leave-one-load-out
    validation at the paper's epochs, where removing no layers was worst; on tiny tasks the
    splits tie, so the real task decides. Two rounds beat one (the paper's) and three on the same
    validation. First-order Taylor is the head and channel criterion: it beat Wanda at 8.7x and
    13.8x, but Wanda needs no backward pass: pick it for models too large to backpropagate
    through on the device at hand.

    Example:
        >>> config = CascadeConfig(target_ratio=2.5)
        >>> config.layer_share, config.head_share, config.channel_share, config.rounds
        (0.5, 0.2, 0.3, 2)
    """

    model_config = ConfigDict(extra="forbid")

    target_ratio: float = Field(gt=1.0, description="body-parameter compression dense/pruned "
                                "(measure.body_parameters), e.g. 2.5 leaves 40% of the body")
    layer_share: float = Field(0.5, ge=0, le=1, description="share of the removal budget taken "
                               "by removing whole layers (stage 1)")
    head_share: float = Field(0.2, ge=0, le=1, description="share taken by attention heads or "
                              "KV groups (stage 2)")
    channel_share: float = Field(0.3, ge=0, le=1, description="share taken by FFN channels "
                                 "(stage 3, solves for the exact target)")
    layer_criterion: str = Field("lcr", description="layer importance (importance.IMPORTANCES)")
    head_criterion: str = Field("taylor", description="head / KV-group importance")
    channel_criterion: str = Field("taylor", description="FFN-channel importance")
    layer_epochs: int = Field(10, ge=0, description="LoRA epochs after layer removal (paper 10)")
    head_epochs: int = Field(10, ge=0, description="LoRA epochs after head removal (paper 10)")
    channel_epochs: int = Field(30, ge=0, description="LoRA epochs after channel removal "
                                "(paper 30)")
    epoch_scale: float = Field(1.0, gt=0, description="multiplies every stage's epochs (>= 1 "
                               "epoch when the stage has any): 0.1 for quick runs and tests")
    lora_rank: int = Field(4, ge=1, description="LoRA rank (paper: 4 beat 8, 16 and full FT)")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha (paper: 16)")
    lora_lr: float = Field(5e-4, gt=0, description="recovery learning rate (AdamW, linear decay)")
    lora_target: str = Field("attention", description=f"LoRA targets, one of {TARGETS}")
    distill_weight: float = Field(0.0, ge=0, le=1, description="recovery also distils from "
                                  "the dense model's logits with this weight (0: labels only, "
                                  "the paper)")
    distill_temperature: float = Field(2.0, gt=0, description="softmax temperature of the "
                                       "distillation")
    distill_teacher: Literal["dense", "previous"] = Field(
        "dense", description="whose logits recovery distils: the dense model's (computed once) "
        "or, each stage, those of the model just before that stage's removal")
    rounds: int = Field(2, ge=1, description="iterative cascade: the head and channel stages "
                        "run this many times, each round taking 1/rounds of their shares and "
                        "recovery epochs (1: the paper's three stages)")
    calibration_samples: int = Field(128, ge=1, description="calibration examples used to "
                                     "score each stage (taken from calib_batches in order)")
    seed: int = Field(42, description="seed for recovery shuffling and LoRA initialisation")
    coupling_aware: bool | None = Field(None, description="True: GQA attention goes by KV "
                                        "group, gated FFN channels by gate/up/down triple; None: "
                                        "automatic from the static SIA check")
    include_vocab: bool = Field(False, description="finally trim the vocabulary to the tokens "
                                "the training texts use (needs the tokenizer; not in the ratio)")
    show_progress: bool = Field(True, description="rich progress bars and stage lines")

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> CascadeConfig:
        total = self.layer_share + self.head_share + self.channel_share
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"layer_share + head_share + channel_share = {total:g}: they split "
                             "the removal budget and must sum to 1")
        if self.lora_target not in TARGETS:
            raise ValueError(f"lora_target={self.lora_target!r} must be one of {TARGETS}")
        return self

    def epochs(self, stage: Stage, rounds: int = 1) -> int:
        """Recovery epochs of ``stage`` after ``epoch_scale`` (0 stays 0), spread over ``rounds``
        (each round's part; >= 1 when the stage has any).

        Example:
            >>> CascadeConfig(target_ratio=4).epochs("channels", rounds=2)
            15
        """
        base = {Stage.LAYERS: self.layer_epochs, Stage.HEADS: self.head_epochs,
                Stage.CHANNELS: self.channel_epochs}[stage]
        return 0 if base == 0 else max(1, round(base * self.epoch_scale / rounds))

    def schedule(self) -> list[tuple[Stage, float, str, int]]:
        """The stages in order as (stage, share of the removal budget, criterion, recovery
        epochs): layers, then ``rounds`` times heads and channels, each round with its part.

        Example:
            >>> [s.value for s, *_ in CascadeConfig(target_ratio=4, rounds=2).schedule()]
            ['layers', 'heads', 'channels', 'heads', 'channels']
        """
        per_round = (((Stage.HEADS, self.head_share / self.rounds, self.head_criterion,
                       self.epochs(Stage.HEADS, self.rounds)),
                      (Stage.CHANNELS, self.channel_share / self.rounds, self.channel_criterion,
                       self.epochs(Stage.CHANNELS, self.rounds))) * self.rounds)
        return [(Stage.LAYERS, self.layer_share, self.layer_criterion,
                 self.epochs(Stage.LAYERS)),
                *per_round]


def run_cascade(
    model: torch.nn.Module,
    tokenizer: Any,
    train_batches: Sequence[Batch],
    calib_batches: Sequence[Batch],
    config: CascadeConfig,
    evaluate: Evaluate | None = None,
    *,
    vocab_texts: Sequence[str] | None = None,
) -> tuple[torch.nn.Module, CascadeReport]:
    """Prune ``model`` to ``config.target_ratio`` layer -> head -> channel, recovering after each.

    Returns the pruned, recovered model (plain transformers, in place where possible) and the
    report. ``tokenizer`` is only used by the optional vocabulary stage (it may be None), which
    keeps the tokens of ``vocab_texts`` (default: the decoded training batches) and puts the
    renumbered tokenizer in ``report.tokenizer``.
    Raises ValueError when the target exceeds what removing everything prunable reaches.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))
        >>> batches = [{"input_ids": torch.randint(4, 64, (8, 10)), "labels": torch.arange(8) % 2}]
        >>> run_cascade(model, None, batches, batches, CascadeConfig(target_ratio=10.0))
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: target_ratio=10 is unreachable: ... reaches at most 6.55x; ...
    """
    surgeon = surgeon_for(model)
    dense = measure.body_parameters(model)
    coupled = resolve_coupling(model, config.coupling_aware)
    goal_body = check_reachable(surgeon, model, config.target_ratio, coupled)
    calib = calibration_subset(calib_batches, config.calibration_samples)
    console = Console(quiet=not config.show_progress)
    report = CascadeReport("cascade", config.target_ratio, dense, coupled,
                           evaluate_metrics(evaluate, model))
    loss_fn = distillation(model, train_batches, config)
    budget = dense - goal_body
    schedule = config.schedule()
    cumulative = 0.0
    for position, (stage, share, criterion, epochs) in enumerate(schedule):
        cumulative += share
        last = position == len(schedule) - 1
        stage_goal = goal_body if last else dense - round(cumulative * budget)
        later = {s for s, *_ in schedule[position + 1:]}
        console.log(f"[bold]{stage}[/]: {criterion} ({granularity(surgeon, stage, coupled)}) "
                    "on the current model")
        start = time.perf_counter()
        if config.distill_teacher == "previous" and position:
            loss_fn = distillation(model, train_batches, config)
        removed = prune_stage(surgeon, model, stage, criterion, calib, stage_goal, goal_body,
                              coupled, later_stages=later)
        model, entry = finish_stage(model, report, stage, criterion, removed, epochs,
                                    train_batches, config, evaluate, loss_fn)
        entry.seconds = time.perf_counter() - start
        console.log(f"{stage}: body {entry.body_parameters:,} ({entry.ratio:.2f}x) "
                    f"{entry.metrics} in {entry.seconds:.1f} s")
    if config.include_vocab:
        model, report.tokenizer = _trim_vocab(model, tokenizer, train_batches, vocab_texts)
    return model, report


def _trim_vocab(model: torch.nn.Module, tokenizer: Any, batches: Sequence[Batch],
                texts: Sequence[str] | None) -> tuple[torch.nn.Module, Any]:
    """Vocabulary stage: keep the tokens the training texts produce (not part of the body ratio)."""
    from slewguard.models.prune.vocab import trim_vocabulary

    if tokenizer is None:
        raise ValueError("include_vocab=True needs the tokenizer: pass it to run_cascade")
    if texts is None:
        texts = [t for b in batches for t in tokenizer.batch_decode(b["input_ids"],
                                                                    skip_special_tokens=True)]
    return trim_vocabulary(model, tokenizer, texts)
