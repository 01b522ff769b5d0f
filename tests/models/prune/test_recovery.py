"""LoRA recovery: only adapters + head train; the merged model keeps the peft logits."""

from __future__ import annotations

import pytest
import torch

from slewguard.models.prune.recovery import (
    distillation_loss,
    lora_target_modules,
    recover,
    teacher_logits,
)
from tests.models.prune.toys import tiny_model, toy_batches


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_recover_trains_adapters_and_head_only_then_merges(family: str) -> None:
    model = tiny_model(family, layers=3)
    batches = toy_batches(4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    history: list[dict] = []
    merged = recover(model, batches, epochs=3, lr=5e-3, history=history, show_progress=False)

    names = [n for n, _ in merged.named_modules()]
    assert not any("lora" in n or "modules_to_save" in n for n in names)
    assert type(merged).__name__ == type(model).__name__
    changed = {n for n, p in merged.named_parameters() if not torch.equal(p, before[n])}
    targets = lora_target_modules(merged)
    head = "classifier" if family == "bert" else "score"
    assert any(n.startswith(head) for n in changed)
    for name in changed:  # nothing outside the attention projections and the head moved
        assert name.startswith(head) or any(f".{t}." in name for t in targets), name
    assert any("embed" in n or "wte" in n or "embeddings" in n for n in before)
    assert not any("embed" in n or "wte" in n or "word_embeddings" in n for n in changed)
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(p.requires_grad for p in merged.parameters())


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_merged_logits_equal_peft_model_logits(family: str) -> None:
    from peft import LoraConfig, get_peft_model

    from slewguard.models.families import FAMILIES
    from slewguard.models.train import fit

    batches = toy_batches(n_batches=2)
    model = tiny_model(family, layers=3)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=lora_target_modules(model),
                        modules_to_save=list(FAMILIES[family].head),
                        fan_in_fan_out=family == "gpt2")
    peft_model = get_peft_model(model, config)
    fit(peft_model, batches, epochs=2, lr=1e-2, show_progress=False)
    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(input_ids=batches[0]["input_ids"]).logits
        merged = peft_model.merge_and_unload()
        got = merged(input_ids=batches[0]["input_ids"]).logits
    assert torch.allclose(got, expected, atol=1e-5)


def test_recover_zero_epochs_is_identity_and_bad_input_raises() -> None:
    model = tiny_model("bert", layers=3)
    assert recover(model, toy_batches(1), epochs=0) is model
    with pytest.raises(ValueError, match="rank"):
        recover(model, toy_batches(1), epochs=1, rank=0)
    with pytest.raises(ValueError, match="target"):
        lora_target_modules(model, target="everything")


def _kl_to(targets: list[torch.Tensor], model: torch.nn.Module, batches: list[dict]) -> float:
    """Mean KL(softmax(targets) || softmax(model)) over the batches."""
    functional = torch.nn.functional
    with torch.no_grad():
        return sum(float(functional.kl_div(
            functional.log_softmax(model(input_ids=b["input_ids"]).logits, -1),
            functional.log_softmax(t, -1), reduction="batchmean", log_target=True))
            for t, b in zip(targets, batches, strict=True)) / len(batches)


def test_distillation_loss_is_cross_entropy_at_weight_zero_and_zero_on_itself() -> None:
    model, batches = tiny_model("bert", layers=2), toy_batches(2)
    targets = teacher_logits(model, batches)
    assert targets[0].shape == (8, 3) and not targets[0].requires_grad
    with torch.no_grad():
        own = model(**batches[1]).loss
        assert float(distillation_loss(targets, weight=0.0)(model, 1, batches[1])) == \
            pytest.approx(float(own), rel=1e-5)
        # the model against its own logits: the KL part is 0, only (1 - w) * CE remains
        half = distillation_loss(targets, weight=0.5, temperature=3.0)(model, 1, batches[1])
        assert float(half) == pytest.approx(0.5 * float(own), rel=1e-4)


def test_recovery_with_distillation_moves_the_student_toward_the_teacher() -> None:
    batches = toy_batches(4)
    # a teacher that names the next class: learnable from the marker, contrary to the labels
    targets = [4 * torch.nn.functional.one_hot((b["labels"] + 1) % 3, 3).float()
               for b in batches]
    plain = recover(tiny_model("bert", layers=2), batches, epochs=15, lr=3e-2,
                    show_progress=False)
    distilled = recover(tiny_model("bert", layers=2), batches, epochs=15, lr=3e-2,
                        show_progress=False, loss_fn=distillation_loss(targets, weight=1.0))
    start = _kl_to(targets, tiny_model("bert", layers=2), batches)
    assert _kl_to(targets, distilled, batches) < 0.5 * start
    assert _kl_to(targets, distilled, batches) < 0.25 * _kl_to(targets, plain, batches)


def test_distillation_rejects_bad_settings_and_mismatched_teachers() -> None:
    model, batches = tiny_model("bert", layers=2), toy_batches(1)
    with pytest.raises(ValueError, match=r"weight=1.5 must be in \[0, 1\]"):
        distillation_loss([], weight=1.5)
    with pytest.raises(ValueError, match="temperature=0"):
        distillation_loss([], temperature=0)
    wrong = distillation_loss([torch.zeros(8, 5)], weight=0.5)
    with pytest.raises(ValueError, match=r"shape \(8, 5\), the student's \(8, 3\)"):
        wrong(model, 0, batches[0])
