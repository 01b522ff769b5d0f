"""LoRA recovery after a pruning stage: adapters on the attention projections, merged back.

The paper recovers with LoRA rank 4, alpha 16 on the attention projections only, trained on the
task's own training split; the classifier head trains with them (``modules_to_save``). The adapters
are merged into the weights afterwards, so what comes back is a plain transformers model with the
same shapes as before: the next pruning stage and the exporter never see a peft module.

Beyond the paper, recovery may also distil from the dense model: ``teacher_logits`` computes its
logits once per training batch (eval mode, no gradient) and ``distillation_loss`` mixes the
temperature-softened KL to them with the labels' cross-entropy (Hinton et al. 2015).

Example:
    >>> from slewguard.models.backbones import tiny_config
    >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))
    >>> batches = [{"input_ids": torch.randint(4, 64, (8, 10)), "labels": torch.arange(8) % 2}]
    >>> model = recover(model, batches, epochs=1, show_progress=False)
    >>> type(model).__name__, any("lora" in name for name, _ in model.named_parameters())
    ('BertForSequenceClassification', False)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from slewguard.models.families import FAMILIES, Family
from slewguard.models.train import Batch, LossFn, fit

# What LoRA adapts (attention projections, optionally the FFN ones) and the classifier head that
# trains in full come from the model's Family (slewguard.models.families).
TARGETS = ("attention", "attention+ffn")


def lora_target_modules(model: torch.nn.Module, target: str = "attention") -> list[str]:
    """The module-name suffixes LoRA adapts for ``model``'s family, only those present in the model.

    A layer whose attention was removed entirely simply has no matching modules.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> llama = FAMILIES["llama"].model_class(tiny_config("llama"))
        >>> lora_target_modules(llama)
        ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj']
        >>> lora_target_modules(llama, "attention+ffn")[4:]
        ['mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']
    """
    family = _family(model)
    if target not in TARGETS:
        raise ValueError(f"target={target!r} is not one of {TARGETS}")
    wanted = family.attention + (family.ffn if target == "attention+ffn" else ())
    names = [name for name, module in model.named_modules() if _is_linear(module)]
    present = [suffix for suffix in wanted if any(n.endswith("." + suffix) for n in names)]
    if not present:
        raise ValueError(f"model has none of the LoRA target modules {wanted}: nothing to adapt")
    return present


def recover(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    epochs: int,
    lr: float = 5e-4,
    rank: int = 4,
    alpha: int = 16,
    target: str = "attention",
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    *,
    seed: int = 0,
    show_progress: bool = True,
    history: list[dict[str, float]] | None = None,
    loss_fn: LossFn | None = None,
) -> torch.nn.Module:
    """Train LoRA adapters (+ the classifier head) on ``batches``, merge, return the plain model.

    ``history`` (a list) receives ``fit``'s per-epoch records when given. ``epochs=0`` returns the
    model untouched (useful for "no recovery" baselines). ``loss_fn`` replaces the labels' loss
    (``distillation_loss``).

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))
        >>> batches = [{"input_ids": torch.randint(4, 64, (8, 10)), "labels": torch.arange(8) % 2}]
        >>> history = []
        >>> model = recover(model, batches, epochs=1, rank=4, alpha=16, history=history,
        ...                 show_progress=False)
        >>> [record["epoch"] for record in history], recover(model, batches, epochs=0) is model
        ([1], True)
    """
    from peft import LoraConfig, get_peft_model

    if epochs < 0:
        raise ValueError(f"epochs={epochs} must be >= 0 (0 skips recovery)")
    if rank < 1:
        raise ValueError(f"rank={rank} must be >= 1")
    if epochs == 0:
        return model
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=lora_target_modules(model, target),
        modules_to_save=list(_family(model).head),
        fan_in_fan_out=_family(model).conv1d,  # GPT-2's Conv1D stores weights (in, out)
        bias="none",
    )
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, config)
    records = fit(peft_model, batches, epochs=epochs, lr=lr, evaluate=evaluate,
                  description="LoRA recovery", show_progress=show_progress, seed=seed,
                  loss_fn=loss_fn)
    if history is not None:
        history.extend(records)
    merged = peft_model.merge_and_unload()
    for name, param in merged.named_parameters():  # peft froze the body; give back what it had
        param.requires_grad_(trainable.get(name, True))
    merged.eval()
    return merged


def teacher_logits(model: torch.nn.Module, batches: Sequence[Batch]) -> list[torch.Tensor]:
    """``model``'s logits for every batch (eval mode, no gradient): the distillation targets.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))
        >>> batches = [{"input_ids": torch.randint(4, 64, (8, 10)), "labels": torch.arange(8) % 2}]
        >>> targets = teacher_logits(model, batches)
        >>> len(targets), targets[0].shape, targets[0].requires_grad
        (1, torch.Size([8, 2]), False)
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = [model(**{k: v for k, v in b.items() if k != "labels"}).logits.detach().float()
               for b in batches]
    model.train(was_training)
    return out


def distillation_loss(targets: Sequence[torch.Tensor], weight: float = 0.5,
                      temperature: float = 2.0) -> LossFn:
    """A ``fit`` loss: ``(1 - weight) * CE(labels) + weight * T^2 * KL(teacher_T || student_T)``.

    ``targets[i]`` are the teacher's logits for batch ``i`` (``teacher_logits``). ``weight`` 0
    is plain cross-entropy, 1 ignores the labels. Train with it through
    ``recover(model, batches, epochs, loss_fn=loss_fn)``.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))
        >>> batches = [{"input_ids": torch.randint(4, 64, (8, 10)), "labels": torch.arange(8) % 2}]
        >>> loss_fn = distillation_loss(teacher_logits(model, batches), weight=1.0)
        >>> loss_fn(model.eval(), 0, batches[0]).item()  # the student is still its teacher
        0.0
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distillation weight={weight} must be in [0, 1] (0: labels only)")
    if temperature <= 0:
        raise ValueError(f"distillation temperature={temperature} must be > 0 (2 is usual)")
    functional = torch.nn.functional

    def loss(model: torch.nn.Module, index: int, batch: Batch) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float()
        teacher = targets[index]
        if teacher.shape != logits.shape:
            raise ValueError(f"teacher logits for batch {index} have shape "
                             f"{tuple(teacher.shape)}, the student's {tuple(logits.shape)}: "
                             "compute them with teacher_logits on the same batches")
        hard = functional.cross_entropy(logits, batch["labels"])
        soft = functional.kl_div(functional.log_softmax(logits / temperature, dim=-1),
                                 functional.log_softmax(teacher / temperature, dim=-1),
                                 reduction="batchmean", log_target=True)
        return (1.0 - weight) * hard + weight * temperature ** 2 * soft

    return loss


def dense_teacher(model: torch.nn.Module, batches: Sequence[Batch], weight: float,
                  temperature: float = 2.0) -> LossFn | None:
    """A recovery loss distilling from ``model`` as it is now (call it on the dense model, before
    anything is removed), or None (the labels' own loss) when ``weight`` is 0.

    Example:
        >>> from slewguard.models.backbones import tiny_config
        >>> model = FAMILIES["bert"].model_class(tiny_config("bert"))
        >>> batches = [{"input_ids": torch.randint(4, 64, (8, 10)), "labels": torch.arange(8) % 2}]
        >>> dense_teacher(model, batches, weight=0.0) is None
        True
        >>> callable(dense_teacher(model, batches, weight=0.5))
        True
    """
    if not weight:
        return None
    return distillation_loss(teacher_logits(model, batches), weight, temperature)


def _family(model: torch.nn.Module) -> Family:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(f"model_type={model_type!r} has no LoRA recovery targets; supported: "
                         f"{sorted(FAMILIES)}")
    return FAMILIES[model_type]


def _is_linear(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
