"""Ratio targeting: a unit's cost is what its removal takes, budgets are spent weakest first."""

from __future__ import annotations

import pytest
import torch

from slewguard.models.prune.budget import (
    apply_counts,
    capacity,
    check_reachable,
    granularity,
    prune_stage,
    select_counts,
    unit_cost,
)
from slewguard.models.prune.kinds import Removal, Unit
from slewguard.models.prune.measure import body_parameters
from slewguard.models.prune.surgery import surgeon_for
from tests.models.prune.toys import tiny_model, toy_batches


def test_granularity_follows_stage_and_coupling():
    bert, llama = surgeon_for(tiny_model("bert")), surgeon_for(tiny_model("llama"))
    assert granularity(bert, "layers", coupled=True) == "layer"
    assert granularity(bert, "channels", coupled=True) == "channel"
    assert granularity(bert, "heads", coupled=True) == "head"  # MHA: no groups to keep whole
    assert granularity(llama, "heads", coupled=True) == "kv_group"
    assert granularity(llama, "heads", coupled=False) == "head"
    with pytest.raises(ValueError, match="stage='ffn' is not one of layers, heads, channels"):
        granularity(bert, "ffn", coupled=False)


REMOVALS = [  # (family, unit, removal of one unit of layer 1)
    ("bert", "head", lambda s, m: s.remove_heads(m, 1, [2])),
    ("bert", "channel", lambda s, m: s.remove_ffn_channels(m, 1, [5])),
    ("bert", "layer", lambda s, m: s.remove_layers(m, [1])),
    ("gpt2", "head", lambda s, m: s.remove_heads(m, 1, [0])),
    ("gpt2", "channel", lambda s, m: s.remove_ffn_channels(m, 1, [7])),
    ("llama", "kv_group", lambda s, m: s.remove_kv_groups(m, 1, [0])),
    ("llama", "head", lambda s, m: s.remove_heads(m, 1, [0, 2])),  # a slot: one per KV group
    ("llama", "channel", lambda s, m: s.remove_ffn_channels(m, 1, [3])),
]


@pytest.mark.parametrize("family,unit,remove", REMOVALS, ids=[f"{f}-{u}" for f, u, _ in REMOVALS])
def test_unit_cost_is_what_removing_the_unit_takes_from_the_body(family, unit, remove):
    model = tiny_model(family)
    surgeon = surgeon_for(model)
    cost, before = unit_cost(surgeon, model, 1, unit), body_parameters(model)
    remove(surgeon, model)
    assert cost > 0 and before - body_parameters(model) == cost


def test_capacity_always_leaves_one_unit():
    bert, llama = tiny_model("bert"), tiny_model("llama")  # 4 heads; llama: 2 KV groups of 2
    assert capacity(surgeon_for(bert), bert, 0, "head") == 3
    assert capacity(surgeon_for(bert), bert, 0, "channel") == 63
    assert capacity(surgeon_for(llama), llama, 0, "kv_group") == 1
    assert capacity(surgeon_for(llama), llama, 0, "head") == 1  # per group: 2 heads, one stays


def test_check_reachable_gives_the_goal_or_the_most_that_can_be_reached():
    model = tiny_model("bert")
    surgeon, dense = surgeon_for(model), body_parameters(model)
    assert check_reachable(surgeon, model, 2.0, coupled=False) == round(dense / 2.0)
    with pytest.raises(ValueError, match=r"target_ratio=1000 is unreachable: .* at most "
                                         r"(\d+\.\d\d)x; pass target_ratio <= \1"):
        check_reachable(surgeon, model, 1000.0, coupled=False)


def test_select_counts_spends_the_budget_on_the_weakest_units_across_layers():
    model = tiny_model("bert")
    surgeon = surgeon_for(model)
    cost = unit_cost(surgeon, model, 0, "head")
    # Layer-normalised: layer 0's first head is by far the weakest; then ties in layer order.
    scores = [torch.tensor([0.1, 1.0, 1.0, 1.0])] + [torch.ones(4) * 5] * 3
    assert select_counts(surgeon, model, "head", scores, budget=2 * cost) == {0: 1, 1: 1}
    assert select_counts(surgeon, model, "head", scores, budget=0) == {}
    assert select_counts(surgeon, model, "head", scores, budget=0, minimum=1) == {0: 1}
    # Never more than a layer's capacity, however large the budget.
    everything = select_counts(surgeon, model, "head", scores, budget=10**9)
    assert everything == {layer: 3 for layer in range(4)}


def test_apply_counts_removes_the_weakest_indices_and_says_which():
    model = tiny_model("bert")
    surgeon = surgeon_for(model)
    scores = [torch.tensor([3.0, 0.1, 2.0, 1.0])] + [torch.ones(4)] * 3
    assert apply_counts(surgeon, model, "head", scores, {0: 2}) == [Removal(Unit.HEAD, 0, (1, 3))]
    assert surgeon.attention_units(model, 0) == 2 and surgeon.attention_units(model, 1) == 4


def test_prune_stage_lands_within_one_unit_of_its_goal():
    model = tiny_model("bert")
    surgeon, dense = surgeon_for(model), body_parameters(model)
    goal = dense - 5 * unit_cost(surgeon, model, 0, "channel")  # 5 channels' worth
    removed = prune_stage(surgeon, model, "channels", "l1", toy_batches(), goal, goal,
                          coupled=False)
    assert {r.unit for r in removed} == {Unit.CHANNEL}
    assert sum(len(r.indices) for r in removed) == 5
    assert body_parameters(model) == goal
    assert prune_stage(surgeon, model, "channels", "l1", toy_batches(), goal, goal,
                       coupled=False) == []  # at the goal: nothing more goes


def test_prune_stage_never_removes_the_first_or_last_layer():
    model = tiny_model("bert", layers=4)
    surgeon = surgeon_for(model)
    removed = prune_stage(surgeon, model, "layers", "lcr", toy_batches(), stage_goal=1,
                          goal_body=1, coupled=False, later_stages=())
    assert removed == [Removal(Unit.LAYER, None, (1, 2))] and surgeon.num_layers(model) == 2
