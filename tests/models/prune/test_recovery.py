"""LoRA recovery: only adapters + head train; the merged model keeps the peft logits."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from slewguard.models.prune.recovery import lora_target_modules, recover

VOCAB = 40


def tiny_model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if family == "bert":
        config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3,
                            num_attention_heads=4, intermediate_size=64, num_labels=3,
                            max_position_embeddings=64)
        return BertForSequenceClassification(config).eval()
    if family == "gpt2":
        config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4, n_positions=64,
                            num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=1)
        return GPT2ForSequenceClassification(config).eval()
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=1,
                         max_position_embeddings=64)
    return LlamaForSequenceClassification(config).eval()


def toy_batches(n_batches: int = 4, batch_size: int = 8, seq: int = 10) -> list[dict]:
    """Label = which of three marker tokens (5, 6, 7) the sequence carries."""
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(n_batches):
        ids = torch.randint(10, VOCAB, (batch_size, seq), generator=generator)
        labels = torch.randint(0, 3, (batch_size,), generator=generator)
        ids[torch.arange(batch_size), 3] = labels + 5
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                        "labels": labels})
    return batches


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_recover_trains_adapters_and_head_only_then_merges(family: str) -> None:
    model = tiny_model(family)
    batches = toy_batches()
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
    model = tiny_model(family)
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
    model = tiny_model("bert")
    assert recover(model, toy_batches(1), epochs=0) is model
    with pytest.raises(ValueError, match="rank"):
        recover(model, toy_batches(1), epochs=1, rank=0)
    with pytest.raises(ValueError, match="target"):
        lora_target_modules(model, target="everything")
