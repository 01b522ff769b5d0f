"""The family registry: one Family per architecture, used by backbones, export and pruning."""

from __future__ import annotations

from dataclasses import replace

import pytest
from transformers import AutoModelForSequenceClassification

from slewguard.models import backbones, export
from slewguard.models.families import FAMILIES, register
from slewguard.models.prune.surgery import Surgeon, surgeon_for


def test_keys_are_model_types_and_each_family_has_its_surgeon():
    for name, family in FAMILIES.items():
        assert name == family.model_type == family.config_class.model_type
        assert issubclass(family.surgeon, Surgeon) and family.surgeon is not Surgeon


def test_every_backbone_name_maps_to_a_registered_architecture():
    # minilm/bert, llama/smollm2 are pretrained sources of two registered architectures.
    for name in backbones.SUPPORTED_FAMILIES:
        family = backbones.BACKBONE_FAMILIES[backbones.check_family(name)]
        assert FAMILIES[family.model_type] is family, name
        assert name.startswith("tiny-") or name in family.backbones, name
    assert {"bert": "minilm", "smollm2": "llama"}.items() <= backbones.FAMILY_ALIASES.items()
    shipped = [name for name in backbones.SUPPORTED_FAMILIES if backbones.pretrained(name)]
    assert {"minilm", "bert", "llama", "smollm2"} <= set(shipped)
    assert not {"gpt2", "qwen2", "tiny-bert", "tiny-llama"} & set(shipped)


def test_a_family_file_names_the_module_paths_once_and_the_surgeon_reads_them():
    # Surgeon.layers()/modules() come from the Family's paths; gqa is the Family's.
    for model_type, family in FAMILIES.items():
        model = family.model_class(family.config_class(vocab_size=16, **family.tiny_sizes))
        surgeon = surgeon_for(model)
        assert surgeon.family is family and surgeon.gqa is family.gqa
        block = family.layer_stack(model)[1]
        mods = surgeon.modules(model, 1)
        assert surgeon.layers(model) is family.layer_stack(model) and mods["layer"] is block
        assert [mods[k] for k in ("q", "k", "v", "o")] == [
            family.module(block, path)
            for path in (family.query, family.key, family.value, family.out_proj)]
        assert [mods[k] for k in ("ffn_gate", "ffn_in") if k in mods] == [
            family.module(block, path) for path in family.ffn_in], model_type
        assert mods["ffn_out"] is family.module(block, family.ffn_out)
        assert mods["attention"] is surgeon.attention_module(model, 1)
        assert any(mods["v"] is m for m in mods["attention"].children()), model_type


def test_a_family_states_how_its_backbones_build():
    geometry = FAMILIES["gpt2"]
    with pytest.raises(ValueError, match="would build nothing"):
        replace(geometry, scratch_sizes=None)
    with pytest.raises(ValueError, match="no backbones name"):
        replace(geometry, backbones=(), pretrained=lambda num_labels, cache_dir: None)
    with pytest.raises(ValueError, match="without the prefix"):
        replace(geometry, backbones=("tiny-gpt2",))


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_tiny_model_builds_with_the_family_classes(model_type):
    family = FAMILIES[model_type]
    bb = backbones.build(f"tiny-{model_type}", num_labels=3, vocabulary=["rms", "high"])
    assert type(bb.model) is family.model_class
    assert type(bb.model.config) is family.config_class
    stack = family.layer_stack(bb.model)
    surgeon = surgeon_for(bb.model)
    assert type(surgeon) is family.surgeon
    assert len(stack) == surgeon.num_layers(bb.model) == 2
    names = {name for name, _ in bb.model.named_modules()}
    for path in (*family.attention, family.value, family.out_proj, *family.ffn):
        assert f"{family.layers}.0.{path}" in names, path
    for path in family.head:
        assert path in names, path


def test_export_registers_every_family_with_auto():
    for model_type, family in FAMILIES.items():
        config = family.config_class(vocab_size=16, **family.tiny_sizes)
        model = AutoModelForSequenceClassification.from_config(config)
        assert type(model) is export.PRUNED_CLASSES[model_type]
        assert isinstance(model, family.model_class)


def test_register_refuses_a_second_family_of_one_model_type_or_backbone_name():
    with pytest.raises(ValueError, match="model_type='gpt2' is already registered"):
        register(FAMILIES["gpt2"])
    with pytest.raises(ValueError, match="'smollm2': 'llama'.*already name other families"):
        register(replace(FAMILIES["gpt2"], model_type="gpt2-copy", backbones=("smollm2",)))
    assert "gpt2-copy" not in FAMILIES
