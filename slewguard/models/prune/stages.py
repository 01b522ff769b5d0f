"""What every pruning stage does around its removal, shared by the cascade and the baselines.

A run starts from the dense model (``resolve_coupling``, ``calibration_subset``,
``distillation``, ``evaluate_metrics``) and opens a ``CascadeReport``; after each removal
``finish_stage`` measures the model, evaluates it, recovers it with LoRA when something went and
appends a ``StageReport``. Choosing what to remove is the caller's (``budget.prune_stage`` for the
cascade, the one-shot scorers in ``baselines``).

Example:
    >>> from slewguard.models.backbones import tiny_config
    >>> from slewguard.models.families import FAMILIES
    >>> from slewguard.models.prune.cascade import CascadeConfig
    >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))  # 2 layers, body 17,088
    >>> report = CascadeReport("cascade", 2.5, measure.body_parameters(model), False, {})
    >>> report.final_ratio, report.final_metrics      # no stage finished yet: the dense model
    (1.0, {})
    >>> surgeon_for(model).remove_layers(model, [1])  # the stage's removal, then its report
    >>> cut = [Removal("layer", None, [1])]
    >>> model, entry = finish_stage(model, report, Stage.LAYERS, "lcr", cut, 0, [],
    ...                             CascadeConfig(target_ratio=2.5), None)  # 0 epochs: no LoRA
    >>> len(report.stages), entry.body_parameters, report.final_ratio  # 17,088 / 8,544
    (1, 8544, 2.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from slewguard.models.prune import measure
from slewguard.models.prune.budget import granularity
from slewguard.models.prune.kinds import Removal, Stage, Unit
from slewguard.models.prune.recovery import dense_teacher, recover
from slewguard.models.prune.sia import static_check
from slewguard.models.prune.surgery import surgeon_for
from slewguard.models.train import Batch, LossFn

if TYPE_CHECKING:
    from slewguard.models.prune.cascade import CascadeConfig

Evaluate = Callable[[torch.nn.Module], dict[str, float]]
_UNITS = frozenset(u.value for u in Unit)


@dataclass
class StageReport:
    """One stage: what was removed, the size after it, the accuracy after recovery, the time.

    ``stage`` and ``granularity`` may be given as text (a report file's): they are stored as a
    ``Stage`` and a ``Unit``, and ``as_dict`` writes them back as plain text. The one-shot
    baselines remove two kinds in one stage; their granularity stays text, e.g. "head+channel".

    Example:
        >>> entry = StageReport("heads", "taylor", "head", [Removal(Unit.HEAD, 0, (1, 3))],
        ...                     900, 1.2, 0.5, 2)
        >>> entry.stage, entry.granularity
        (<Stage.HEADS: 'heads'>, <Unit.HEAD: 'head'>)
        >>> entry.indices(Unit.HEAD, 0), entry.indices(Unit.HEAD, 1)
        ((1, 3), ())
        >>> entry.as_dict()["removed"]
        [{'unit': 'head', 'layer': 0, 'indices': [1, 3]}]
        >>> StageReport.from_dict(entry.as_dict()) == entry
        True
    """

    stage: Stage
    criterion: str
    granularity: Unit | str  # str: the one-shot baselines' "<head unit>+channel"
    removed: list[Removal]
    body_parameters: int
    ratio: float
    seconds: float
    recovery_epochs: int
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_before_recovery: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stage = Stage(self.stage)
        if self.granularity in _UNITS:
            self.granularity = Unit(self.granularity)

    def indices(self, unit: Unit, layer: int | None = None) -> tuple[int, ...]:
        """The indices of the ``unit``s removed from ``layer`` (None: the whole layers removed),
        () when none went."""
        return tuple(i for r in self.removed if r.unit == unit and r.layer == layer
                     for i in r.indices)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of plain values (the kinds as text, each removal as {"unit",
        "layer", "indices"}), so JSON and YAML read as before."""
        return {**self.__dict__, "stage": self.stage.value, "granularity": str(self.granularity),
                "removed": [r.as_dict() for r in self.removed]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageReport:
        """The stage ``as_dict`` wrote, or one of a report written before ``Removal``."""
        return cls(**{**data, "removed": _removals(data["removed"], data["granularity"])})


def _removals(removed: list | dict, granularity: str) -> list[Removal]:
    """``removed`` as removals; the old form is a dict keyed by "layers" (whole layers), by the
    layer index (units of the stage's granularity) or by "<layer>:channels" (the one-shot
    baselines' channels, whose granularity reads "head+channel")."""
    if isinstance(removed, list):
        return [Removal.from_dict(r) for r in removed]
    out = []
    for key, indices in removed.items():
        layer, _, channels = key.partition(":")
        if layer == Stage.LAYERS:
            out.append(Removal(Unit.LAYER, None, indices))
        else:
            unit = Unit.CHANNEL if channels else granularity.split("+")[0]
            out.append(Removal(unit, int(layer), indices))
    return out


@dataclass
class CascadeReport:
    """The whole run: dense size and metrics, one ``StageReport`` per stage, the final ratio."""

    method: str
    target_ratio: float
    dense_body_parameters: int
    coupling_aware: bool
    dense_metrics: dict[str, float]
    stages: list[StageReport] = field(default_factory=list)
    tokenizer: Any = None  # the remapped tokenizer when the vocabulary stage ran

    @property
    def final_ratio(self) -> float:
        return self.stages[-1].ratio if self.stages else 1.0

    @property
    def final_metrics(self) -> dict[str, float]:
        return self.stages[-1].metrics if self.stages else self.dense_metrics

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``prune_report.json`` holds): the tokenizer left out, the
        ``final_ratio`` added.

        Example:
            >>> report = CascadeReport("cascade", 2.5, 50_000, False, dense_metrics={})
            >>> CascadeReport.from_dict(report.as_dict()) == report, report.as_dict()["stages"]
            (True, [])
        """
        out = {k: v for k, v in self.__dict__.items() if k != "tokenizer"}
        out["stages"] = [s.as_dict() for s in self.stages]
        out["final_ratio"] = self.final_ratio
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CascadeReport:
        """The report ``as_dict`` wrote (without its tokenizer; ``final_ratio`` is derived)."""
        fields = {k: v for k, v in data.items() if k != "final_ratio"}
        return cls(**{**fields, "stages": [StageReport.from_dict(s) for s in data["stages"]]})


def resolve_coupling(model: torch.nn.Module, coupling_aware: bool | None) -> bool:
    """``coupling_aware`` as given, or True when the static SIA check says violated.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> llama, bert = (FAMILIES[k].model_class(tiny_config(k)) for k in ("llama", "bert"))
        >>> resolve_coupling(llama, None), resolve_coupling(bert, None)  # GQA + gated FFN: True
        (True, False)
        >>> resolve_coupling(llama, False)  # as given
        False
    """
    return (not static_check(model.config).satisfied) if coupling_aware is None \
        else coupling_aware


def calibration_subset(batches: Sequence[Batch], samples: int) -> list[Batch]:
    """The first ``samples`` examples of ``batches`` (whole batches, the last one cut).

    Example:
        >>> batches = [{"input_ids": torch.zeros(10, 4, dtype=torch.long)}] * 3
        >>> [len(b["input_ids"]) for b in calibration_subset(batches, 16)]
        [10, 6]
    """
    if not batches:
        raise ValueError("calib_batches is empty: pass calibration batches (e.g. from train)")
    out, left = [], samples
    for batch in batches:
        if left <= 0:
            break
        size = int(batch["input_ids"].shape[0])
        out.append(batch if size <= left else {k: v[:left] for k, v in batch.items()})
        left -= size
    return out


def distillation(model: torch.nn.Module, train_batches: Sequence[Batch],
                 config: CascadeConfig) -> LossFn | None:
    """``recovery.dense_teacher`` with ``config``'s weight and temperature (None at weight 0).

    Example:
        >>> from slewguard.models.prune.cascade import CascadeConfig
        >>> distillation(torch.nn.Linear(2, 2), [], CascadeConfig(target_ratio=2.0)) is None
        True
    """
    return dense_teacher(model, train_batches, config.distill_weight, config.distill_temperature)


def evaluate_metrics(evaluate: Evaluate | None, model: torch.nn.Module) -> dict[str, float]:
    """``evaluate(model)`` in eval mode without gradients, as floats ({} when it is None).

    The model is left in eval mode.

    Example:
        >>> evaluate_metrics(lambda m: {"accuracy": torch.tensor(0.5)}, torch.nn.Linear(2, 2))
        {'accuracy': 0.5}
    """
    if evaluate is None:
        return {}
    model.eval()
    with torch.no_grad():
        return {k: float(v) for k, v in evaluate(model).items()}


def finish_stage(model: torch.nn.Module, report: CascadeReport, stage: Stage, criterion: str,
                 removed: Sequence[Removal], epochs: int, train_batches: Sequence[Batch],
                 config: CascadeConfig, evaluate: Evaluate | None,
                 loss_fn: LossFn | None = None) -> tuple[torch.nn.Module, StageReport]:
    """Measure, evaluate, recover (when something went) and append the stage's report.

    ``removed`` is what the stage cut from ``model`` (empty: nothing, the previous metrics carry
    over and there is no recovery). Returns the recovered model and the appended entry, whose
    ``seconds`` the caller fills in.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> from slewguard.models.families import FAMILIES
        >>> from slewguard.models.prune.cascade import CascadeConfig
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))  # 2 layers of 4 heads
        >>> report = CascadeReport("cascade", 2.5, measure.body_parameters(model), False, {})
        >>> surgeon_for(model).remove_heads(model, 0, [1, 3])
        >>> train = [{"input_ids": torch.randint(4, 64, (8, 10)), "labels": torch.arange(8) % 2}]
        >>> model, entry = finish_stage(model, report, Stage.HEADS, "taylor",
        ...                             [Removal("head", 0, [1, 3])], 1, train,
        ...                             CascadeConfig(target_ratio=2.5), lambda m: {"seen": 1})
        >>> entry.granularity, entry.body_parameters, entry.recovery_epochs, entry.metrics
        (<Unit.HEAD: 'head'>, 14992, 1, {'seen': 1.0})
    """
    surgeon = surgeon_for(model)
    unit = granularity(surgeon, stage, report.coupling_aware)
    body = measure.body_parameters(model)
    entry = StageReport(Stage(stage), criterion, unit, list(removed), body,
                        report.dense_body_parameters / body, 0.0, 0)
    previous = report.stages[-1].metrics if report.stages else report.dense_metrics
    if removed:
        entry.metrics = entry.metrics_before_recovery = evaluate_metrics(evaluate, model)
        if epochs:
            entry.recovery_epochs = epochs
            model = _recover(model, train_batches, config, epochs, loss_fn)
            entry.metrics = evaluate_metrics(evaluate, model)
    else:
        entry.metrics = dict(previous)
    report.stages.append(entry)
    return model, entry


def _recover(model: torch.nn.Module, train_batches: Sequence[Batch], config: CascadeConfig,
             epochs: int, loss_fn: LossFn | None) -> torch.nn.Module:
    return recover(model, train_batches, epochs, lr=config.lora_lr, rank=config.lora_rank,
                   alpha=config.lora_alpha, target=config.lora_target, seed=config.seed,
                   show_progress=config.show_progress, loss_fn=loss_fn)
