"""Importance criteria on tiny models: each ranks a component we made unimportant lowest."""

from __future__ import annotations

import pytest
import torch

from slewguard.models.prune.importance import IMPORTANCES, importance
from slewguard.models.prune.kinds import Unit
from slewguard.models.prune.surgery import surgeon_for
from tests.models.prune import FAMILIES, batch, tiny_model

GQA = ("llama", "qwen2")


def _calibration(rows: int = 2, labels: bool = False) -> list[dict[str, torch.Tensor]]:
    batches = [batch(seed=s, rows=rows) for s in range(2)]
    if labels:
        for i, b in enumerate(batches):
            b["labels"] = (torch.arange(rows) + i) % 3
    return batches


def _make_layer_identity(model, layer: int) -> None:
    """Zero everything a pre-norm block adds to the residual stream."""
    mods = surgeon_for(model).modules(model, layer)
    with torch.no_grad():
        for name in ("o", "ffn_out"):
            mods[name].weight.zero_()
            if mods[name].bias is not None:
                mods[name].bias.zero_()


@pytest.mark.parametrize("name", ["lcr", "block_influence"])
@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_layer_scores_put_an_identity_layer_lowest(family, name):
    model = tiny_model(family)
    _make_layer_identity(model, 1)
    scores = importance(name).score(model, _calibration())
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    assert scores[1] < 1e-6
    assert int(scores.argmin()) == 1 and scores.max() > 1e-2


def test_lcr_ignores_padding_tokens():
    model = tiny_model("bert")
    padded = batch(seed=0, rows=3)
    trimmed = {k: v[-1:, :6] for k, v in padded.items()}  # the last row without its 3 pad tokens
    only_last = {k: v[-1:] for k, v in padded.items()}
    a = importance("lcr").score(model, [only_last])
    b = importance("lcr").score(model, [trimmed])
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_l1_ranks_a_zeroed_head_and_channel_lowest(family):
    model = tiny_model(family)
    surgeon = surgeon_for(model)
    views = surgeon.projections(model, 0)
    with torch.no_grad():
        views["q"][16:24] = 0  # head 2 (head_dim 8)
        views["o"][:, 16:24] = 0
        if family not in GQA:
            views["k"][16:24] = 0
            views["v"][16:24] = 0
        for name in ("ffn_in", "ffn_gate"):
            if views[name] is not None:
                views[name][7] = 0
        views["ffn_out"][:, 7] = 0
    heads = importance("l1", "head").score(model)
    channels = importance("l1", "channel").score(model)
    assert [len(s) for s in heads] == [4, 4, 4] and [len(s) for s in channels] == [64] * 3
    assert int(heads[0].argmin()) == 2 and heads[0][2] == 0
    assert int(channels[0].argmin()) == 7 and channels[0][7] == 0
    assert heads[1].min() > 0


def test_wanda_ranks_by_activations_when_weights_are_equal():
    model = tiny_model("bert")
    block = model.bert.encoder.layer[0]
    signs = torch.sign(torch.randn(64, 32, generator=torch.Generator().manual_seed(3)))
    with torch.no_grad():
        block.intermediate.dense.weight.copy_(0.01 * signs)
        block.output.dense.weight.copy_(0.1 * signs.T)
        block.intermediate.dense.bias.zero_()
        block.intermediate.dense.bias[5] = 4.0   # GELU passes it: large input to output.dense
        block.intermediate.dense.bias[9] = -4.0  # GELU kills it: near-zero input
    l1 = importance("l1", "channel").score(model)[0]
    wanda = importance("wanda", "channel").score(model, _calibration())[0]
    assert torch.allclose(l1, l1[0].expand(64))  # weights alone cannot tell channels apart
    assert int(wanda.argmax()) == 5 and int(wanda.argmin()) == 9


@pytest.mark.parametrize("granularity", ["head", "kv_group", "channel"])
@pytest.mark.parametrize("family", FAMILIES)
def test_taylor_scores_are_finite_non_negative_and_leave_no_grads(family, granularity):
    model = tiny_model(family)
    frozen = model.base_model.embeddings if family == "bert" else None
    if frozen is not None:
        frozen.requires_grad_(False)
    scores = importance("taylor", granularity).score(model, _calibration(labels=True))
    per_layer = 64 if granularity == "channel" else (2 if granularity == "kv_group" and
                                                     family in GQA else 4)
    assert [len(s) for s in scores] == [per_layer] * 3
    assert all(torch.isfinite(s).all() and (s >= 0).all() and s.sum() > 0 for s in scores)
    assert all(p.grad is None for p in model.parameters())
    if frozen is not None:
        assert not any(p.requires_grad for p in frozen.parameters())
    head = model.classifier if family == "bert" else model.score
    assert head.weight.requires_grad


@pytest.mark.parametrize("name", ["l1", "wanda", "taylor"])
@pytest.mark.parametrize("family", GQA)
def test_kv_group_scores_couple_the_group_with_its_query_heads(family, name):
    model = tiny_model(family)
    calib = _calibration(labels=True)
    groups = importance(name, "kv_group").score(model, calib)
    heads = importance(name, "head").score(model, calib)
    for layer_groups, layer_heads in zip(groups, heads, strict=True):
        assert layer_groups.shape == (2,)
        # a group = its 2 query heads + its own k/v rows (which no single head owns)
        assert (layer_groups > layer_heads.view(2, 2).sum(1)).all()


@pytest.mark.parametrize("name", ["l1", "wanda", "taylor"])
def test_unit_scores_follow_heterogeneous_widths(name):
    model = tiny_model("qwen2")
    surgeon = surgeon_for(model)
    surgeon.remove_kv_groups(model, 0, [1])
    surgeon.remove_heads(model, 2, [0, 2])
    surgeon.remove_ffn_channels(model, 1, range(10))
    calib = _calibration(labels=True)
    assert [len(s) for s in importance(name, "head").score(model, calib)] == [2, 4, 2]
    assert [len(s) for s in importance(name, "kv_group").score(model, calib)] == [1, 2, 2]
    assert [len(s) for s in importance(name, "channel").score(model, calib)] == [64, 54, 64]


def test_registry_and_factory_errors():
    assert set(IMPORTANCES) == {"lcr", "block_influence", "l1", "wanda", "taylor"}
    assert not importance("wanda", "channel").needs_backward
    assert importance("taylor").granularity is Unit.HEAD
    assert importance("l1", "kv_group").granularity is Unit.KV_GROUP  # text becomes the Unit
    with pytest.raises(ValueError, match="registered"):
        importance("fisher")
    with pytest.raises(ValueError, match="granularity='neuron'"):
        importance("l1", "neuron")
    with pytest.raises(ValueError, match="whole layers"):
        importance("lcr", "head")
    with pytest.raises(ValueError, match="labels"):
        importance("taylor").score(tiny_model("gpt2"), _calibration())
    with pytest.raises(ValueError, match="at least one"):
        importance("wanda").score(tiny_model("gpt2"), [])
