"""Cascade and baselines on tiny random models: ratio targeting, re-scoring, errors."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from slewguard.models.prune import importance as importance_module
from slewguard.models.prune.baselines import run_baseline
from slewguard.models.prune.cascade import CascadeConfig, run_cascade
from slewguard.models.prune.kinds import Unit
from slewguard.models.prune.measure import body_parameters
from slewguard.models.prune.stages import CascadeReport
from slewguard.models.prune.surgery import surgeon_for
from tests.models.prune.toys import VOCAB, tiny_model, toy_batches

FAST = dict(epoch_scale=0.03, show_progress=False, calibration_samples=16)



def accuracy(batches: list[dict]):
    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        right = sum(int((model(input_ids=b["input_ids"]).logits.argmax(-1) == b["labels"]).sum())
                    for b in batches)
        return {"accuracy": right / sum(len(b["labels"]) for b in batches)}
    return evaluate


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_cascade_hits_target_ratio(family: str) -> None:
    model, batches = tiny_model(family), toy_batches()
    dense = body_parameters(model)
    pruned, report = run_cascade(model, None, batches, batches,
                                 CascadeConfig(target_ratio=2.5, **FAST), accuracy(batches))
    ratio = dense / body_parameters(pruned)
    assert ratio == pytest.approx(2.5, rel=0.02)
    assert report.final_ratio == pytest.approx(ratio)
    # the default: layers, then two rounds of heads and channels
    assert [s.stage for s in report.stages] == ["layers", "heads", "channels", "heads",
                                                 "channels"]
    layers = report.stages[0].indices(Unit.LAYER)
    assert layers  # a 4-layer model at 2.5x loses a middle layer
    assert 0 not in layers
    assert 3 not in layers
    assert all("accuracy" in s.metrics for s in report.stages)
    assert report.coupling_aware is (family == "llama")
    if family == "llama":  # GQA: whole KV groups with their query heads
        assert report.stages[1].granularity == "kv_group"
    with torch.no_grad():
        logits = pruned(input_ids=batches[0]["input_ids"]).logits
    assert logits.shape == (8, 3) and torch.isfinite(logits).all()


def test_cascade_without_coupling_removes_balanced_query_heads_on_gqa() -> None:
    model, batches = tiny_model("llama"), toy_batches()
    dense = body_parameters(model)
    pruned, report = run_cascade(model, None, batches, batches,
                                 CascadeConfig(target_ratio=1.5, coupling_aware=False,
                                               layer_share=0.0, head_share=0.5,
                                               channel_share=0.5, rounds=1, **FAST))
    assert report.stages[1].granularity == "head" and report.stages[1].removed
    surgeon = surgeon_for(pruned)
    for layer in range(surgeon.num_layers(pruned)):
        assert surgeon.kv_groups(pruned, layer) == 2  # every group keeps a query head
    assert dense / body_parameters(pruned) == pytest.approx(1.5, rel=0.02)


class CountingLCR(importance_module.LayerContributionRatio):
    name = "counting_lcr"
    calls: list[dict] = []

    def score(self, model, batches):
        CountingLCR.calls.append(_snapshot(model, "lcr"))
        return super().score(model, batches)


class CountingWanda(importance_module.Wanda):
    name = "counting_wanda"

    def score(self, model, batches):
        CountingLCR.calls.append(_snapshot(model, self.granularity))
        return super().score(model, batches)


def _snapshot(model: torch.nn.Module, granularity: str) -> dict:
    surgeon = surgeon_for(model)
    return {"granularity": granularity, "layers": surgeon.num_layers(model),
            "heads": sum(surgeon.attention_units(model, i)
                         for i in range(surgeon.num_layers(model))),
            "heads0": surgeon.attention_units(model, 0),
            "q0": surgeon.projections(model, 0)["q"].detach().clone()}


def test_each_stage_rescores_the_recovered_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(importance_module.IMPORTANCES, "counting_lcr", CountingLCR)
    monkeypatch.setitem(importance_module.IMPORTANCES, "counting_wanda", CountingWanda)
    CountingLCR.calls.clear()
    model, batches = tiny_model("bert"), toy_batches()
    config = CascadeConfig(target_ratio=2.5, layer_criterion="counting_lcr",
                           head_criterion="counting_wanda", channel_criterion="counting_wanda",
                           **FAST)
    _, report = run_cascade(model, None, batches, batches, config)
    calls = CountingLCR.calls
    assert [c["granularity"] for c in calls] == ["lcr", "head", "channel", "head",
                                                 "channel"]  # once per stage, two rounds
    assert calls[1]["layers"] == calls[0]["layers"] - len(report.stages[0].indices(Unit.LAYER))
    assert calls[2]["heads"] < calls[1]["heads"]
    assert calls[4]["heads"] < calls[3]["heads"] == calls[2]["heads"]  # round 2 rescores too
    # LoRA recovery was merged into the attention projections between the scoring passes
    # (layer 0 stays, so calls[0] and calls[1] see the same layer 0, its q with all its rows)
    assert 0 not in report.stages[0].indices(Unit.LAYER)
    assert calls[1]["q0"].shape == calls[0]["q0"].shape
    assert not torch.equal(calls[1]["q0"], calls[0]["q0"])
    # ... and after the head stage: layer 0's q is its kept heads' rows, changed by recovery
    heads, removed = calls[1]["heads0"], report.stages[1].indices(Unit.HEAD, 0)
    width = calls[1]["q0"].shape[0] // heads
    rows = [r for h in range(heads) if h not in removed for r in range(h * width, (h + 1) * width)]
    assert calls[2]["q0"].shape == (len(rows), calls[1]["q0"].shape[1])
    assert not torch.equal(calls[2]["q0"], calls[1]["q0"][rows])


@pytest.mark.parametrize("method", ["magnitude", "wanda", "taylor-lora"])
def test_one_shot_baselines_hit_target_ratio(method: str) -> None:
    model, batches = tiny_model("gpt2"), toy_batches()
    dense = body_parameters(model)
    pruned, report = run_baseline(method, model, batches, batches,
                                  CascadeConfig(target_ratio=2.0, **FAST), accuracy(batches))
    assert dense / body_parameters(pruned) == pytest.approx(2.0, rel=0.02)
    assert surgeon_for(pruned).num_layers(pruned) == 4  # heads and channels only
    assert (report.stages[0].recovery_epochs > 0) is (method == "taylor-lora")
    assert {r.unit for r in report.stages[0].removed} == {Unit.HEAD, Unit.CHANNEL}


def test_shortgpt_removes_whole_layers_only() -> None:
    model, batches = tiny_model("bert"), toy_batches()
    dense = body_parameters(model)
    pruned, report = run_baseline("shortgpt", model, batches, batches,
                                  CascadeConfig(target_ratio=2.0, **FAST))
    assert len(report.stages[0].indices(Unit.LAYER)) == 2
    assert dense / body_parameters(pruned) == pytest.approx(2.0, rel=0.02)


def test_unreachable_ratio_and_unsupported_architecture_raise() -> None:
    batches = toy_batches(1)
    with pytest.raises(ValueError, match=r"unreachable.*at most \d+\.\d+x"):
        run_cascade(tiny_model("bert"), None, batches, batches,
                    CascadeConfig(target_ratio=50.0, **FAST))
    distil = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, num_labels=3))
    with pytest.raises(ValueError, match="distilbert"):
        run_cascade(distil, None, batches, batches, CascadeConfig(target_ratio=2.0, **FAST))
    with pytest.raises(ValueError, match="method"):
        run_baseline("random", tiny_model("bert"), batches, batches,
                     CascadeConfig(target_ratio=2.0))


def test_cascade_config_forbids_unknown_keys_and_checks_shares() -> None:
    with pytest.raises(ValidationError, match="extra"):
        CascadeConfig(target_ratio=2.0, layers_share=0.5)
    with pytest.raises(ValidationError, match="sum to 1"):
        CascadeConfig(target_ratio=2.0, layer_share=0.5, head_share=0.5, channel_share=0.5)
    with pytest.raises(ValidationError, match="target_ratio"):
        CascadeConfig(target_ratio=1.0)
    assert CascadeConfig(target_ratio=2.0, epoch_scale=0.1).epochs("channels") == 3


def test_prune_command_writes_a_loadable_model_at_the_ratio(tmp_path, capsys) -> None:
    pytest.importorskip("slewguard.signal.textify", reason="signal/textify.py not built yet")
    from slewguard.cli import main
    from slewguard.models.classifier import load
    from slewguard.signal import datasets

    spec = datasets.SimulatedDatasetSpec(classes=("healthy", "outer_race"), windows_per_class=4,
                                         window_seconds=4.0, sample_rate_hz=2000.0, rpm_min=6.0)
    datasets.write(datasets.simulate_dataset(spec, progress=False), tmp_path / "data")
    assert main(["train", "--data", str(tmp_path / "data"), "--family", "tiny-bert",
                 "--epochs", "1", "--out", str(tmp_path / "dense")]) == 0
    assert main(["prune", str(tmp_path / "dense"), "--data", str(tmp_path / "data"),
                 "--target-ratio", "1.5", "--epoch-scale", "0.03", "--distill-weight", "0.5",
                 "--rounds", "2", "--out", str(tmp_path / "pruned")]) == 0
    clf = load(tmp_path / "pruned")
    assert clf.card["pruning"]["ratio"] == pytest.approx(1.5, rel=0.02)
    assert clf.card["pruning"]["command"].startswith("slewguard prune")
    assert "--distill-weight 0.5 --distill-temperature 2.0" in clf.card["pruning"]["command"]
    assert "--rounds 2" in clf.card["pruning"]["command"]
    report = json.loads((tmp_path / "pruned" / "prune_report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ["layers", "heads", "channels", "heads",
                                                       "channels"]
    assert all(set(r) == {"unit", "layer", "indices"} for s in report["stages"]
               for r in s["removed"])
    assert CascadeReport.from_dict(report).as_dict() == report  # the file reads back whole
    assert (tmp_path / "pruned" / "prune_report.json").is_file()
    assert (tmp_path / "pruned" / "prune.png").stat().st_size > 0
    assert clf.predict_proba(["rms 1"]).shape == (1, 2)
    assert clf.card["onnx"]["max_abs_logit_diff"] <= 1e-4  # prune writes model.onnx too
    assert (tmp_path / "pruned" / "model.onnx").is_file()
    assert main(["prune", str(tmp_path / "dense"), "--data", str(tmp_path / "data"),
                 "--target-ratio", "500", "--out", str(tmp_path / "x")]) == 2
    assert "unreachable" in capsys.readouterr().err


def test_cascade_vocabulary_stage_trims_embeddings_and_returns_the_tokenizer() -> None:
    from slewguard.models.backbones import build

    words = [f"w{i}" for i in range(30)]
    backbone = build("tiny-bert", 2, vocabulary=words)
    model, tokenizer = backbone.model, backbone.tokenizer
    texts = ["w1 w2 w3", "w2 w3 w4", "w1 w4 w4", "w3 w2 w1"] * 4
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    batches = [{**enc, "labels": torch.tensor([0, 1, 0, 1] * 4)}]
    rows = model.get_input_embeddings().weight.shape[0]
    pruned, report = run_cascade(model, tokenizer, batches, batches,
                                 CascadeConfig(target_ratio=1.2, include_vocab=True, **FAST),
                                 vocab_texts=texts)
    assert report.tokenizer is not None
    assert pruned.get_input_embeddings().weight.shape[0] < rows
    new = report.tokenizer(texts[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(pruned(**new).logits).all()


def test_cascade_lands_on_a_high_target_when_the_channels_are_nearly_exhausted() -> None:
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=6, num_attention_heads=8,
        intermediate_size=256, num_labels=3, max_position_embeddings=64)).eval()
    batches = toy_batches()
    dense = body_parameters(model)
    config = CascadeConfig(target_ratio=16.0, layer_share=0.2, head_share=0.2,
                           channel_share=0.6, **FAST)
    pruned, _ = run_cascade(model, None, batches, batches, config)
    assert dense / body_parameters(pruned) == pytest.approx(16.0, rel=0.02)


def test_cascade_distils_every_stage_from_the_dense_model(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import slewguard.models.prune.stages as stages_module

    model, batches = tiny_model("bert"), toy_batches()
    with torch.no_grad():
        dense_logits = [model(input_ids=b["input_ids"]).logits for b in batches]
    seen: list = []
    original = stages_module.recover

    def spy(model, batches, epochs, **kwargs):
        seen.append(kwargs["loss_fn"])
        return original(model, batches, epochs, **kwargs)

    monkeypatch.setattr(stages_module, "recover", spy)
    config = CascadeConfig(target_ratio=2.5, distill_weight=1.0, **FAST)
    run_cascade(model, None, batches, batches, config)
    assert len(seen) == 5 and all(fn is not None for fn in seen)
    assert len({id(fn) for fn in seen}) == 1  # one teacher, computed before any removal
    # weight 1, the dense model against the stored targets: zero loss, so they are its logits
    dense = tiny_model("bert")
    with torch.no_grad():
        assert float(seen[0](dense, 0, batches[0])) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(dense(input_ids=batches[0]["input_ids"]).logits, dense_logits[0])
    seen.clear()
    run_cascade(tiny_model("bert"), None, batches, batches,
                CascadeConfig(target_ratio=2.5, **FAST))
    assert seen == [None] * 5  # the paper's recovery: labels only
    with pytest.raises(ValidationError, match="distill_weight"):
        CascadeConfig(target_ratio=2.5, distill_weight=1.5)


def test_cascade_distils_each_stage_from_the_model_before_it(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    import slewguard.models.prune.cascade as cascade_module

    teachers: list[int] = []
    original = cascade_module.distillation

    def spy(model, batches, config):
        teachers.append(body_parameters(model))
        return original(model, batches, config)

    monkeypatch.setattr(cascade_module, "distillation", spy)
    model, batches = tiny_model("bert"), toy_batches()
    dense = body_parameters(model)
    config = CascadeConfig(target_ratio=2.5, distill_weight=0.5, distill_teacher="previous",
                           **FAST)
    _, report = run_cascade(model, None, batches, batches, config)
    # the dense model, then the model each earlier stage left behind
    assert teachers == [dense, *(s.body_parameters for s in report.stages[:-1])]
    assert teachers[0] > teachers[1] > teachers[2]
    with pytest.raises(ValidationError, match="distill_teacher"):
        CascadeConfig(target_ratio=2.5, distill_teacher="student")


def test_iterative_cascade_repeats_heads_and_channels_and_lands_on_the_target() -> None:
    model, batches = tiny_model("bert"), toy_batches()
    dense = body_parameters(model)
    config = CascadeConfig(target_ratio=3.0, rounds=2, **FAST)
    pruned, report = run_cascade(model, None, batches, batches, config)
    assert [s.stage for s in report.stages] == ["layers", "heads", "channels", "heads",
                                                 "channels"]
    assert all(s.removed for s in report.stages)  # every round removes its part
    sizes = [s.body_parameters for s in report.stages]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    # the first round's channels stop short of the target; the last one lands on it
    assert dense / sizes[2] < 2.9
    assert dense / body_parameters(pruned) == pytest.approx(3.0, rel=0.02)
    paper = CascadeConfig(target_ratio=3.0, rounds=2)  # the paper's 10/10/30, split per round
    assert [e for *_, e in paper.schedule()] == [10, 5, 15, 5, 15]
    assert [paper.epochs(s) for s in ("layers", "heads", "channels")] == [10, 10, 30]
    with pytest.raises(ValidationError, match="rounds"):
        CascadeConfig(target_ratio=2.5, rounds=0)


def test_rounds_leave_the_one_shot_baselines_recovery_unchanged() -> None:
    # Taylor + LoRA recovers for the cascade's total epochs (the paper's 50), however many
    # rounds the cascade splits them into
    config = dict(target_ratio=2.0, show_progress=False, calibration_samples=16,
                  layer_epochs=1, head_epochs=1, channel_epochs=2)
    epochs = []
    for rounds in (1, 2):
        _, report = run_baseline("taylor-lora", tiny_model("bert"), toy_batches(),
                                 toy_batches(), CascadeConfig(rounds=rounds, **config))
        epochs.append(report.stages[-1].recovery_epochs)
    assert epochs == [4, 4]
