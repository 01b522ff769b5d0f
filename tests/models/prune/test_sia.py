"""SIA check: static verdicts from configs, measured interactions on tiny models via masking."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    BertConfig,
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    Qwen2Config,
)

from slewguard.models.prune.sia import (
    Part,
    calibration_loss,
    format_report,
    masked,
    measured_check,
    static_check,
)
from tests.models.prune.toys import VOCAB, toy_batches


def tiny_gqa_swiglu() -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                         num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    return LlamaForSequenceClassification(config).eval()


def tiny_mha_gelu() -> torch.nn.Module:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4, n_positions=64,
                        num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    return GPT2ForSequenceClassification(config).eval()


@pytest.mark.parametrize(("config", "satisfied", "shared_kv", "gated"), [
    (BertConfig(), True, False, False),
    (GPT2Config(), True, False, False),
    (LlamaConfig(num_attention_heads=32, num_key_value_heads=8), False, True, True),
    (LlamaConfig(num_attention_heads=32, num_key_value_heads=32), False, False, True),
    (Qwen2Config(num_attention_heads=14, num_key_value_heads=2), False, True, True),
])
def test_static_verdicts(config, satisfied: bool, shared_kv: bool, gated: bool) -> None:
    verdict = static_check(config)
    assert verdict.satisfied is satisfied
    assert (verdict.shared_kv, verdict.gated_ffn) == (shared_kv, gated)
    assert len(verdict.evidence) == 2
    if shared_kv:
        expected = config.num_attention_heads // config.num_key_value_heads
        assert verdict.kv_group_size == expected
        assert f"D = {expected}" in verdict.evidence[0]


def test_static_check_reads_per_layer_widths_and_dicts() -> None:
    verdict = static_check({"model_type": "bert", "num_attention_heads": 12,
                            "slewguard_layer_heads": [12, 6], "slewguard_layer_kv_heads": [12, 3],
                            "hidden_act": "gelu"})
    assert verdict.shared_kv and verdict.kv_group_size == 2
    assert static_check({"model_type": "t5", "num_attention_heads": 8,
                         "feed_forward_proj": "gated-gelu"}).gated_ffn
    with pytest.raises(ValueError, match="num_attention_heads"):
        static_check({"model_type": "cnn"})


def test_masking_is_temporary_and_changes_the_output() -> None:
    model, batches = tiny_gqa_swiglu(), toy_batches(1)
    ids = batches[0]["input_ids"]
    with torch.no_grad():
        dense = model(input_ids=ids).logits
        with masked(model, [("head", 1, 0), ("gate", 1, 3)]):
            cut = model(input_ids=ids).logits
        again = model(input_ids=ids).logits
    assert not torch.allclose(cut, dense)
    assert torch.equal(again, dense)
    # in GQA, a head takes its KV group along: masking head 0 also silences head 1 (same group)
    with masked(model, [("head", 1, 0)]):
        one = calibration_loss(model, batches)
    with masked(model, [("head", 1, 0), ("head", 1, 1)]):
        both = calibration_loss(model, batches)
    assert one == pytest.approx(both, abs=1e-6)


def test_parts_may_be_given_as_text_and_an_unknown_one_is_refused() -> None:
    model, batches = tiny_gqa_swiglu(), toy_batches(1)
    with masked(model, [(Part.HEAD, 1, 0), (Part.UP, 1, 3)]):
        by_part = calibration_loss(model, batches)
    with masked(model, [("head", 1, 0), ("up", 1, 3)]):
        by_text = calibration_loss(model, batches)
    assert by_part == by_text
    neuron = [("neuron", 1, 0)]
    with pytest.raises(ValueError, match="head/gate/up/channel"), masked(model, neuron):
        pass


def test_measured_gate_up_interaction_exceeds_independent_components() -> None:
    batches = toy_batches()
    gqa = measured_check(tiny_gqa_swiglu(), batches, pairs_per_type=4)
    mha = measured_check(tiny_mha_gelu(), batches, pairs_per_type=4)
    gated = gqa.pair_stats["gate_up_same_channel"]
    # gate_j and up_j of one channel: removing either removes the channel, Delta = -single effect
    assert gated["interaction_ratio"] == pytest.approx(1.0, abs=0.05)
    assert gated["mean_abs_delta"] > 0
    assert gated["interaction_ratio"] > 10 * mha.pair_stats["channels"]["interaction_ratio"]
    assert gqa.pair_stats["gate_up_other_channels"]["interaction_ratio"] < 0.2
    same_group = gqa.pair_stats["heads_same_kv_group"]["interaction_ratio"]
    assert same_group > 2 * mha.pair_stats["heads_mha"]["interaction_ratio"]
    assert not gqa.satisfied and mha.satisfied
    assert {"heads", "ffn"} <= set(mha.ranking)
    report = format_report(static_check(tiny_mha_gelu().config), mha)
    assert "measured" in report and "satisfied" in report


def test_measured_check_rejects_bad_layer() -> None:
    with pytest.raises(ValueError, match="layers"):
        measured_check(tiny_mha_gelu(), toy_batches(1), layers=[7])


@pytest.mark.parametrize(("family", "word"),
                         [("tiny-llama", "VIOLATED"), ("tiny-gpt2", "satisfied")])
def test_sia_command_prints_the_static_verdict(family: str, word: str, capsys) -> None:
    pytest.importorskip("slewguard.signal.textify", reason="signal/textify.py not built yet")
    from slewguard.cli import main

    assert main(["sia", family]) == 0
    out = capsys.readouterr().out
    assert "SIA static check" in out and word in out.splitlines()[0]


def test_sia_command_measures_on_a_data_set_and_writes_json(tmp_path, capsys) -> None:
    from slewguard.cli import main

    data = tmp_path / "sim"
    assert main(["dataset", "simulate", "--out", str(data), "--windows-per-class", "3",
                 "--window-seconds", "10", "--sample-rate-hz", "2000", "--rpm-min", "6",
                 "--quiet", "--class", "healthy", "--class", "outer_race"]) == 0
    report = tmp_path / "sia.json"
    assert main(["sia", "tiny-llama", "--data", str(data), "--samples", "4", "--pairs", "2",
                 "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "SIA static check" in out and "(pass --data" not in out
    verdicts = json.loads(report.read_text())
    assert verdicts["static"]["satisfied"] is False  # GQA + SwiGLU
    assert set(verdicts["measured"]) >= {"satisfied"}
    assert isinstance(verdicts["measured"]["satisfied"], bool)
