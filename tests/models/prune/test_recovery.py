"""LoRA recovery: only adapters + head train; the merged model keeps the peft logits."""

from __future__ import annotations

import pytest
import torch

from slewguard.models.prune.recovery import lora_target_modules, recover
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

    from slewguard.models.prune.recovery import HEAD_MODULES
    from slewguard.models.train import fit

    batches = toy_batches(n_batches=2)
    model = tiny_model(family, layers=3)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=lora_target_modules(model),
                        modules_to_save=list(HEAD_MODULES[family]),
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
