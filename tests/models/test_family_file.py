"""Adding a model family is one file: the repository plus ``slewguard/models/families/<name>.py``,
nothing else edited, offers the family everywhere a family is used.

The new file (``NEW_FAMILY``: Mistral, the Llama layout under another ``model_type``) goes into
a temporary tree that links every other file of ``slewguard/`` and ``tests/`` to the
repository's; fresh processes there see it in ``train --family`` without torch, build it, cut it,
save and reload it, adapt it with LoRA, check its SIA, and run the registry's parametrised
family and surgery tests on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models.no_torch import blocked_env

REPO = Path(__file__).resolve().parents[2]

NEW_FAMILY = '''\
"""Mistral decoders: the Llama layout and surgeon (GQA, gated FFN), sliding-window attention."""

from __future__ import annotations

from transformers import MistralConfig, MistralForSequenceClassification

from slewguard.models.families import Family, register, sizes
from slewguard.models.families.llama import LAYOUT, LLAMA, LlamaSurgeon

MISTRAL = register(Family(
    model_type="mistral",
    config_class=MistralConfig,
    model_class=MistralForSequenceClassification,
    surgeon=LlamaSurgeon,
    tiny_sizes=LLAMA.tiny_sizes,
    scratch_sizes=sizes(num_hidden_layers=4, hidden_size=64, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256),
    backbones=("mistral",),
    **LAYOUT,
))
'''

# Everything a family is used for, in a fresh process of the tree with the new file.
USE = '''\
import json, sys, tempfile
import torch
from transformers import MistralForSequenceClassification
from slewguard.cli import main
from slewguard.models import backbones, export
from slewguard.models.cli import FAMILY_CHOICES
from slewguard.models.families import FAMILIES
from slewguard.models.families.llama import LlamaSurgeon
from slewguard.models.prune.recovery import lora_target_modules
from slewguard.models.prune.sia import static_check
from slewguard.models.prune.surgery import surgeon_for

torch.set_num_threads(1)
assert backbones.SUPPORTED_FAMILIES == FAMILY_CHOICES
bb = backbones.build("tiny-mistral", 3, vocabulary=["rms", "high", "low", "bpfo"])
model, tokenizer = bb.model, bb.tokenizer
assert type(model) is MistralForSequenceClassification and bb.family == "tiny-mistral"
surgeon = surgeon_for(model)
assert type(surgeon) is LlamaSurgeon and surgeon.family is FAMILIES["mistral"] and surgeon.gqa
surgeon.remove_kv_groups(model, 0, [1])
surgeon.remove_heads(model, 1, [1, 3])
surgeon.remove_ffn_channels(model, 1, range(10))
inputs = tokenizer(["rms high", "bpfo low high"], padding=True, return_tensors="pt")
with torch.no_grad():
    before = model(**inputs).logits
with tempfile.TemporaryDirectory() as folder:
    export.save_pruned(model, folder, tokenizer)
    again = backbones.load_weights(folder)
    with torch.no_grad():
        after = again(**inputs).logits
assert type(again).__name__ == "MistralForSequenceClassification"
assert torch.allclose(before, after, atol=1e-6)
static = static_check(model.config)
print(json.dumps({
    "heads": model.config.slewguard_layer_heads,
    "kv": model.config.slewguard_layer_kv_heads,
    "channels": model.config.slewguard_layer_intermediate,
    "lora": lora_target_modules(model, "attention+ffn"),
    "sia": [static.shared_kv, static.gated_ffn],
    "scratch_layers": backbones.model_config("mistral", 50, 3, 0).num_hidden_layers,
}))
sys.stdout.flush()
main(["sia", "tiny-mistral"])
'''


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """slewguard/, tests/ and pyproject.toml linked file by file, plus the new family file."""
    root = tmp_path_factory.mktemp("tree")
    for folder in ("slewguard", "tests"):
        shutil.copytree(REPO / folder, root / folder, copy_function=os.symlink,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (root / "pyproject.toml").symlink_to(REPO / "pyproject.toml")
    (root / "slewguard" / "models" / "families" / "mistral.py").write_text(NEW_FAMILY)
    return root


def _run(args: list[str], root: Path, env: dict[str, str], timeout: int):
    out = subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return out.stdout


def _env(root: Path, tmp_path: Path, torch: bool = True) -> dict[str, str]:
    env = os.environ.copy() if torch else blocked_env(tmp_path)
    blocker = [] if torch else env["PYTHONPATH"].split(os.pathsep)[:1]
    return {**env, "PYTHONPATH": os.pathsep.join([*blocker, str(root)])}


def test_the_new_family_is_a_train_choice_without_torch(tree, tmp_path):
    code = ("import json, importlib.util; from slewguard.cli import build_parser; "
            "args = build_parser().parse_args(['train', '--data', 'd', '--out', 'o', "
            "'--family', 'tiny-mistral']); from slewguard.models.cli import FAMILY_CHOICES; "
            "path = importlib.util.find_spec('slewguard.models.families').origin; "
            "print(json.dumps([args.family, FAMILY_CHOICES, path]))")
    family, choices, path = json.loads(_run(["-c", code], tree, _env(tree, tmp_path, False), 120))
    assert Path(path).parents[3] == tree  # the tree's package, not the repository's
    assert family == "tiny-mistral"
    assert choices == ["minilm", "bert", "llama", "smollm2", "gpt2", "mistral", "qwen2",
                       "tiny-bert", "tiny-gpt2", "tiny-llama", "tiny-mistral", "tiny-qwen2"]


@pytest.mark.slow
def test_the_new_family_builds_cuts_saves_adapts_and_checks(tree, tmp_path):
    lines = _run(["-c", USE], tree, _env(tree, tmp_path), 300).splitlines()
    facts = json.loads(lines[0])
    assert facts["heads"] == [2, 2] and facts["kv"] == [1, 2] and facts["channels"] == [64, 54]
    assert facts["lora"] == ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                             "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    assert facts["sia"] == [True, True] and facts["scratch_layers"] == 4
    assert "mistral" in "\n".join(lines[1:]).lower()  # `slewguard sia tiny-mistral` reported


@pytest.mark.slow
def test_the_registry_tests_cover_the_new_family(tree, tmp_path):
    # The family and surgery tests are parametrised over the registry: they test it unasked.
    out = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "mistral",
                "tests/models/test_families.py", "tests/models/prune/test_surgery.py"],
               tree, _env(tree, tmp_path), 500)
    passed = int(out.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 8, out[-2000:]
