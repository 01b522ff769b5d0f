"""Surgery equals masking: a removed head/group/channel/layer gives the masked dense logits."""

from __future__ import annotations

import copy

import pytest
import torch

from slewguard.models.families import FAMILIES as REGISTRY
from slewguard.models.prune.measure import (
    body_parameters,
    compression_ratio,
    peak_inference_rss,
    total_parameters,
    weight_bytes,
)
from slewguard.models.prune.surgery import surgeon_for
from tests.models.prune import (
    FAMILIES,
    batch,
    logits,
    mask_channels,
    mask_heads,
    mask_layer,
    tiny_model,
)

ATOL = 1e-5
GQA = tuple(name for name in FAMILIES if REGISTRY[name].gqa)  # query heads grouped over K/V


def _pair(family: str):
    dense = tiny_model(family)
    return dense, copy.deepcopy(dense), batch()


def _assert_close_and_changed(pruned, masked, reference):
    assert torch.allclose(pruned, masked, atol=ATOL), (pruned - masked).abs().max()
    assert (masked - reference).abs().max() > 1e-4, "masking had no effect: the test proves nothing"


def test_registry_covers_the_four_families():
    assert set(REGISTRY) == set(FAMILIES)


def test_unsupported_family_names_the_model_type():
    model = tiny_model("bert")
    model.config.model_type = "t5"
    with pytest.raises(ValueError, match="t5.*bert"):
        surgeon_for(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_remove_head_equals_masking(family):
    dense, pruned, inputs = _pair(family)
    reference = logits(dense, inputs)
    surgeon = surgeon_for(pruned)
    heads = [1, 3] if family in GQA else [1]  # GQA: one head from each of the 2 groups
    surgeon.remove_heads(pruned, 1, heads)
    mask_heads(dense, family, 1, heads)
    _assert_close_and_changed(logits(pruned, inputs), logits(dense, inputs), reference)
    assert surgeon.attention_units(pruned, 1) == 4 - len(heads)
    assert pruned.config.slewguard_layer_heads == [4, 4 - len(heads), 4]


@pytest.mark.parametrize("family", GQA)
def test_remove_kv_group_equals_masking_its_query_heads(family):
    dense, pruned, inputs = _pair(family)
    reference = logits(dense, inputs)
    surgeon = surgeon_for(pruned)
    surgeon.remove_kv_groups(pruned, 0, [1])
    mask_heads(dense, family, 0, [2, 3])
    _assert_close_and_changed(logits(pruned, inputs), logits(dense, inputs), reference)
    assert (surgeon.attention_units(pruned, 0), surgeon.kv_groups(pruned, 0)) == (2, 1)
    assert pruned.config.slewguard_layer_kv_heads == [1, 2, 2]
    assert pruned.model.layers[0].self_attn.num_key_value_groups == 2


@pytest.mark.parametrize("family", GQA)
def test_gqa_removing_a_whole_groups_heads_drops_the_group(family):
    dense, pruned, inputs = _pair(family)
    surgeon_for(pruned).remove_heads(pruned, 2, [0, 1])
    mask_heads(dense, family, 2, [0, 1])
    assert torch.allclose(logits(pruned, inputs), logits(dense, inputs), atol=ATOL)
    assert pruned.config.slewguard_layer_kv_heads == [2, 2, 1]


def test_gqa_unequal_heads_per_group_is_refused():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="unequal query heads per KV group"):
        surgeon_for(model).remove_heads(model, 0, [0])


@pytest.mark.parametrize("family", FAMILIES)
def test_remove_ffn_channels_equals_masking(family):
    dense, pruned, inputs = _pair(family)
    reference = logits(dense, inputs)
    channels = [0, 5, 9, 17, 30, 41, 50, 63]
    surgeon_for(pruned).remove_ffn_channels(pruned, 2, channels)
    mask_channels(dense, family, 2, channels)
    _assert_close_and_changed(logits(pruned, inputs), logits(dense, inputs), reference)
    assert pruned.config.slewguard_layer_intermediate == [64, 64, 56]


@pytest.mark.parametrize("family", FAMILIES)
def test_remove_layer_equals_identity(family):
    dense, pruned, inputs = _pair(family)
    reference = logits(dense, inputs)
    surgeon = surgeon_for(pruned)
    surgeon.remove_layers(pruned, [1])
    mask_layer(dense, family, 1)
    _assert_close_and_changed(logits(pruned, inputs), logits(dense, inputs), reference)
    assert surgeon.num_layers(pruned) == pruned.config.num_hidden_layers == 2
    layer_idx = [m.layer_idx for m in pruned.modules() if getattr(m, "layer_idx", None) is not None]
    assert sorted(set(layer_idx)) == [0, 1]
    if getattr(pruned.config, "layer_types", None) is not None:  # qwen2: a type per layer
        assert len(pruned.config.layer_types) == 2


@pytest.mark.parametrize("family", FAMILIES)
def test_heterogeneous_cuts_in_every_layer_match_masking(family):
    dense, pruned, inputs = _pair(family)
    reference = logits(dense, inputs)
    surgeon = surgeon_for(pruned)
    gqa = family in GQA
    surgeon.remove_layers(pruned, [0])
    mask_layer(dense, family, 0)
    # pruned layer 0 is dense layer 1, pruned layer 1 is dense layer 2
    surgeon.remove_heads(pruned, 0, [0, 2] if gqa else [0, 2, 3])
    mask_heads(dense, family, 1, [0, 2] if gqa else [0, 2, 3])
    surgeon.remove_kv_groups(pruned, 1, [0])
    mask_heads(dense, family, 2, [0, 1] if gqa else [0])
    surgeon.remove_ffn_channels(pruned, 0, list(range(40)))
    mask_channels(dense, family, 1, range(40))
    surgeon.remove_ffn_channels(pruned, 1, [3])
    mask_channels(dense, family, 2, [3])
    _assert_close_and_changed(logits(pruned, inputs), logits(dense, inputs), reference)
    second = logits(pruned, batch(seed=1, rows=2, length=5))  # config stays consistent
    assert second.shape == (2, 3) and torch.isfinite(second).all()
    assert pruned.config.slewguard_layer_heads == ([2, 2] if gqa else [1, 3])
    assert pruned.config.slewguard_layer_intermediate == [24, 63]


@pytest.mark.parametrize("family", FAMILIES)
def test_removing_all_heads_or_channels_is_refused(family):
    model = tiny_model(family)
    surgeon = surgeon_for(model)
    with pytest.raises(ValueError, match="remove the layer"):
        surgeon.remove_heads(model, 0, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="remove the layer"):
        surgeon.remove_ffn_channels(model, 0, list(range(64)))
    if family in GQA:
        with pytest.raises(ValueError, match="remove the layer"):
            surgeon.remove_kv_groups(model, 0, [0, 1])
    assert surgeon.attention_units(model, 0) == 4 and surgeon.ffn_channels(model, 0) == 64


def test_bad_indices_name_the_parameter():
    model = tiny_model("bert")
    surgeon = surgeon_for(model)
    with pytest.raises(ValueError, match=r"heads=\[4\]"):
        surgeon.remove_heads(model, 0, [4])
    with pytest.raises(ValueError, match="channels"):
        surgeon.remove_ffn_channels(model, 0, [1, 1])
    with pytest.raises(ValueError, match="keep at least one"):
        surgeon.remove_layers(model, [0, 1, 2])


def test_gpt2_layer_scaled_attention_refuses_layer_removal():
    model = tiny_model("gpt2")
    model.config.scale_attn_by_inverse_layer_idx = True
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        surgeon_for(model).remove_layers(model, [1])


def test_projections_are_linear_layout_views_for_gpt2():
    model = tiny_model("gpt2")
    views = surgeon_for(model).projections(model, 0)
    assert views["q"].shape == views["k"].shape == (32, 32)
    assert views["o"].shape == (32, 32) and views["ffn_in"].shape == (64, 32)
    assert views["ffn_gate"] is None
    assert views["k"].data_ptr() == model.transformer.h[0].attn.c_attn.weight[:, 32].data_ptr()


def test_bfloat16_dtype_and_grad_flags_survive_cuts():
    model = tiny_model("llama").to(torch.bfloat16)
    surgeon = surgeon_for(model)
    surgeon.remove_ffn_channels(model, 0, [1, 2])
    surgeon.remove_kv_groups(model, 0, [0])
    mlp = model.model.layers[0].mlp
    assert mlp.up_proj.weight.dtype == torch.bfloat16 and mlp.up_proj.weight.requires_grad
    assert mlp.down_proj.in_features == 62


def test_body_parameters_count_exactly_what_surgery_removes():
    model = tiny_model("bert")
    dense_body, dense_total = body_parameters(model), total_parameters(model)
    layer = sum(p.numel() for p in model.bert.encoder.layer[0].parameters())
    assert dense_body == 3 * layer
    surgeon = surgeon_for(model)
    surgeon.remove_heads(model, 0, [2])
    head = 3 * (8 * 32 + 8) + 8 * 32  # q, k, v rows with biases + o columns
    assert body_parameters(model) == dense_body - head
    surgeon.remove_layers(model, [1])
    assert body_parameters(model) == dense_body - head - layer
    assert total_parameters(model) == dense_total - head - layer
    assert compression_ratio(dense_body, model) == pytest.approx(3 * layer / (2 * layer - head))
    with pytest.raises(ValueError, match="dense_body=0"):
        compression_ratio(0, model)


def test_weight_bytes_counts_weight_files_only(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / "config.json").write_text("{}")
    assert weight_bytes(tmp_path) == 1000
    assert weight_bytes(tmp_path / "model.safetensors") == 1000
    with pytest.raises(ValueError, match="does not exist"):
        weight_bytes(tmp_path / "missing")


@pytest.mark.parametrize("family", FAMILIES)
def test_eager_attention_matches_masking_too(family):
    """Eager attention reads module attributes (num_key_value_groups, ...) that sdpa may not."""
    dense, pruned, inputs = _pair(family)
    for model in (dense, pruned):
        model.config._attn_implementation = "eager"
    reference = logits(dense, inputs)
    surgeon = surgeon_for(pruned)
    if family in GQA:
        surgeon.remove_heads(pruned, 0, [0, 2])  # 2 groups of 1 head: repeat_kv by 1
        surgeon.remove_kv_groups(pruned, 1, [0])
        mask_heads(dense, family, 0, [0, 2])
        mask_heads(dense, family, 1, [0, 1])
    else:
        surgeon.remove_heads(pruned, 0, [1, 2])
        mask_heads(dense, family, 0, [1, 2])
    _assert_close_and_changed(logits(pruned, inputs), logits(dense, inputs), reference)


@pytest.mark.slow
def test_peak_inference_rss_counts_the_models_own_weights_not_the_runtime(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from slewguard.models.export import save_pruned

    sizes = {}
    for layers in (1, 5):
        config = BertConfig(vocab_size=64, hidden_size=256, num_hidden_layers=layers,
                            num_attention_heads=4, intermediate_size=1024,
                            max_position_embeddings=16, num_labels=3)
        save_pruned(BertForSequenceClassification(config).eval(), tmp_path / str(layers))
        sizes[layers] = peak_inference_rss(tmp_path / str(layers), batch_size=2, seq_len=8)
    for rss in sizes.values():
        assert 0 < rss["import_rss_bytes"] <= rss["peak_rss_bytes"]
        assert 0 < rss["model_bytes"] <= rss["peak_rss_bytes"] - rss["import_rss_bytes"]
    # four more layers hold 4 x 789,760 float32 parameters = 12.6 MB: the extra model
    # memory is their weights (touched pages), whatever the runtime faulted in
    extra = sizes[5]["model_bytes"] - sizes[1]["model_bytes"]
    assert 0.8 * 12.6e6 < extra < 1.3 * 12.6e6, extra
    with pytest.raises(ValueError, match="not a directory"):
        peak_inference_rss(tmp_path / "missing")


def test_smollm2_geometry_nine_heads_over_three_groups():
    """SmolLM2's layout (9 query heads over 3 KV heads): head cuts per group and whole groups."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=120, hidden_size=72, num_hidden_layers=2, num_attention_heads=9,
                         num_key_value_heads=3, intermediate_size=48, num_labels=3, pad_token_id=0)
    dense = LlamaForSequenceClassification(config).eval()
    with torch.no_grad():
        for p in dense.parameters():
            p.normal_(0, 0.15)
    pruned, inputs = copy.deepcopy(dense), batch()
    reference = logits(dense, inputs)
    surgeon = surgeon_for(pruned)
    surgeon.remove_heads(pruned, 0, [1, 3, 8])      # one head from every group of 3
    surgeon.remove_heads(pruned, 1, [3, 4, 5])      # all of group 1: the group goes too
    surgeon.remove_heads(pruned, 0, [0, 2, 4])      # now 3 groups of 2: one more from each
    mask_heads(dense, "llama", 0, [1, 3, 8, 0, 4, 6])
    mask_heads(dense, "llama", 1, [3, 4, 5])
    _assert_close_and_changed(logits(pruned, inputs), logits(dense, inputs), reference)
    assert pruned.config.slewguard_layer_heads == [3, 6]
    assert pruned.config.slewguard_layer_kv_heads == [3, 2]
    with pytest.raises(ValueError, match="unequal"):
        surgeon.remove_heads(pruned, 1, [0])


def test_cutting_a_wrapped_projection_says_to_merge_lora_first():
    from peft import LoraConfig, inject_adapter_in_model

    model = inject_adapter_in_model(LoraConfig(r=2, target_modules=["o_proj"]), tiny_model("llama"))
    with pytest.raises(ValueError, match="merge_and_unload"):
        surgeon_for(model).remove_heads(model, 0, [0, 2])
    assert model.model.layers[0].self_attn.q_proj.out_features == 32  # nothing was cut
