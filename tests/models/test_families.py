"""The family registry: one Family per architecture, used by backbones, export and pruning."""

from __future__ import annotations

import pytest
from transformers import AutoModelForSequenceClassification

from slewguard.models import backbones, export
from slewguard.models.families import FAMILIES, register
from slewguard.models.prune.surgery import Surgeon, surgeon_for


def test_keys_are_model_types_and_each_family_has_its_surgeon():
    for name, family in FAMILIES.items():
        assert name == family.model_type == family.config_class.model_type
        assert issubclass(family.surgeon, Surgeon) and family.surgeon is not Surgeon
        assert (family.surgeon.family, family.surgeon.gqa) == (name, family.gqa)


def test_every_backbone_name_maps_to_a_registered_architecture():
    # minilm/bert, llama/smollm2 are pretrained sources of two registered architectures.
    for name in backbones.SUPPORTED_FAMILIES:
        arch = backbones.check_family(name).removeprefix("tiny-")
        assert {"minilm": "bert"}.get(arch, arch) in FAMILIES, name


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


def test_register_refuses_a_second_family_of_one_model_type():
    with pytest.raises(ValueError, match="model_type='gpt2' is already registered"):
        register(FAMILIES["gpt2"])
