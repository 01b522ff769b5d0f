"""The one training loop: full fine-tuning and LoRA recovery both run through ``fit``.

Batches are dicts of tensors as transformers' models take them (``input_ids``,
``attention_mask``, ``labels``); the model returns ``.loss`` when ``labels`` is present.

Example:
    >>> from slewguard.models.backbones import tiny_config
    >>> from slewguard.models.families import FAMILIES
    >>> _ = torch.manual_seed(0)
    >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))
    >>> batches = [{"input_ids": torch.randint(4, 64, (8, 10)), "labels": torch.arange(8) % 2}]
    >>> history = fit(model, batches, epochs=2, lr=1e-2, show_progress=False)
    >>> [r["epoch"] for r in history], history[-1]["train_loss"] < history[0]["train_loss"]
    ([1, 2], True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

Batch = dict[str, torch.Tensor]
# (model, index of the batch in ``batches``, the batch) -> loss; the default is the model's own
LossFn = Callable[[torch.nn.Module, int, Batch], torch.Tensor]


def fit(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    epochs: int,
    lr: float,
    *,
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    weight_decay: float = 0.0,
    description: str = "train",
    show_progress: bool = True,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    epoch_lines: bool = False,
) -> list[dict[str, float]]:
    """Train ``model`` in place with AdamW and a linear decay; returns one record per epoch.

    Only parameters with ``requires_grad`` are optimised, so a peft-wrapped model trains its
    adapters alone. ``evaluate(model)`` runs after every epoch and its numbers join the record.
    ``loss_fn(model, i, batches[i])`` replaces the model's own loss (e.g. distillation).
    The progress bar (``show_progress``) goes to stderr and only when stderr is a terminal;
    ``epoch_lines`` prints each epoch's record there too (``epoch_line``), bar or not.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    if not batches:
        raise ValueError("no training batches: the training split is empty")
    total = epochs * len(batches)
    optimizer, schedule = _optimizer(model, lr, weight_decay, total)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    with _progress(show_progress) as progress:
        task = progress.add_task(description, total=total, status="")
        for epoch in range(epochs):
            loss = _train_epoch(model, batches, generator, optimizer, schedule, loss_fn,
                                progress, task)
            record = {"epoch": epoch + 1, "train_loss": loss}
            if evaluate is not None:
                record.update(_evaluated(model, evaluate))
            history.append(record)
            if epoch_lines:
                progress.console.print(epoch_line(record, epochs), highlight=False, markup=False)
    model.eval()
    return history


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
               total: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the parameters with ``requires_grad``, and its linear decay to 0 over
    ``total`` steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / total)
    return optimizer, schedule


def _progress(show_progress: bool) -> Progress:
    """The training bar on stderr, drawn only when asked and stderr is a terminal."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    console = Console(stderr=True)
    bar = show_progress and console.is_terminal  # a log file gets lines, not bar redraws
    return Progress(*columns, console=console, disable=not bar, transient=True)


def _train_epoch(model: torch.nn.Module, batches: Sequence[Batch], generator: torch.Generator,
                 optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LambdaLR,
                 loss_fn: LossFn | None, progress: Progress, task: TaskID) -> float:
    """One pass over ``batches`` in the order ``generator`` draws, advancing ``progress``'s
    ``task`` by one step per batch; returns the mean loss."""
    model.train()
    running = 0.0
    for i in torch.randperm(len(batches), generator=generator).tolist():
        loss = model(**batches[i]).loss if loss_fn is None else loss_fn(model, i, batches[i])
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = loss.item()
        running += step_loss
        progress.update(task, advance=1, status=f"loss {step_loss:.3f}")
    return running / len(batches)


def _evaluated(model: torch.nn.Module,
               evaluate: Callable[[torch.nn.Module], dict[str, float]]) -> dict[str, float]:
    """``evaluate(model)`` in eval mode and without gradients."""
    model.eval()
    with torch.no_grad():
        return evaluate(model)


def epoch_line(record: dict[str, float], epochs: int) -> str:
    """One epoch's record as a console line: loss, accuracies in percent, other numbers.

    Example:
        >>> epoch_line({"epoch": 2, "train_loss": 0.4123, "test_accuracy": 0.875,
        ...             "train_seconds": 12.34}, epochs=10)
        'epoch 2/10: train loss 0.412, test accuracy 87.50%, train seconds 12.3'
    """
    parts = []
    for key, value in record.items():
        if key == "epoch":
            continue
        name = key.replace("_", " ")
        parts.append(f"{name} {value:.2%}" if key.endswith("accuracy") else f"{name} {value:.3g}")
    return f"epoch {int(record['epoch'])}/{epochs}: " + ", ".join(parts)
