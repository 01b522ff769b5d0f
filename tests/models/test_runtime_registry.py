"""Model runtimes come from one registry: a key -> the module holding the runtime's pieces.

No torch here: the example runtime of docs/development.md ("Add a model runtime") reads only
card.json, and the shipped runtimes are looked at through their checks, not loaded.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from slewguard.models import runtimes, shipped
from slewguard.models.runtimes import RUNTIMES, choose_runtime, register, runtime_module
from slewguard.service.app import load_classifier
from slewguard.service.config import ConfigError, config_from_dict
from slewguard.service.config.model import ModelConfig
from slewguard.service.preflight import model_problems
from slewguard.service.trust import load_trust

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = shipped.shipped_model_dir("default")
SENSORS = [{"sensor_id": "s1", "bearing": "cwru-6205"}]


def _config(**model):
    return config_from_dict({"site": "y", "sensors": SENSORS, "model": model}, env={})


def _docs_example(monkeypatch):
    """The runtime file, the registry entry and the config of docs/development.md."""
    page = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = page.split("\n## Add a model runtime\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    config = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    module = types.ModuleType("uniform_runtime_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code[0], "docs/development.md", "exec"), module.__dict__)  # noqa: S102
    assert '"uniform": "slewguard.models.runtimes.uniform",' in code[1]
    return module, yaml.safe_load(config[0])


@pytest.fixture
def uniform(monkeypatch):
    """The docs' example runtime, registered as ``uniform`` for one test."""
    monkeypatch.setattr(runtimes, "RUNTIMES", dict(RUNTIMES))
    module, config = _docs_example(monkeypatch)
    register("uniform", module)
    return module, config


def test_the_registry_lists_every_runtime_with_its_module():
    assert list(RUNTIMES) == ["onnx", "torch"]
    for key, path in RUNTIMES.items():
        assert path == f"slewguard.models.runtimes.{key}"  # one file per runtime
        module = runtime_module(key)
        for hook in ("problem", "missing_files", "load"):
            assert callable(getattr(module, hook)), (key, hook)
    with pytest.raises(ValueError, match=r"^runtime 'torch' is already registered \(onnx, "
                                         r"torch\)$"):
        register("torch", "slewguard.models.runtimes.torch")
    with pytest.raises(ValueError) as unknown:
        runtime_module("tflite")
    assert str(unknown.value) == ("runtime='tflite' is not a model runtime: pick one of onnx, "
                                  "torch (model.runtime / --runtime)")


def test_each_runtime_checks_itself():
    onnx, torch = runtime_module("onnx"), runtime_module("torch")
    assert onnx.problem(None, "cpu", "float32") is None
    assert onnx.problem(DEFAULT, "auto", "float32") is None
    assert "model.runtime torch" in onnx.problem(None, "cpu", "bfloat16")
    assert "slewguard export" in onnx.problem(Path("no/such/dir"), "cpu", "float32")
    assert torch.problem(None, "cuda", "bfloat16") is None
    assert onnx.missing_files(DEFAULT) == [] and torch.missing_files(DEFAULT) == []


def test_a_registered_runtime_is_loaded_by_key_and_accepted_by_the_config(uniform):
    module, example = uniform
    assert list(runtimes.RUNTIMES) == ["onnx", "torch", "uniform"]
    assert runtime_module("uniform") is module
    clf = runtimes.load(DEFAULT, runtime="uniform")
    assert isinstance(clf, module.UniformClassifier) and clf.runtime == "uniform"
    proba = clf.predict_proba(["rms 4", "rms 5"])
    assert proba.shape == (2, len(clf.classes)) and proba.dtype == np.float32
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert load_trust(clf).detector is not None  # model_dir: the trust layer finds ood.json
    # the registry order makes the default: a new runtime runs only where it is named
    assert choose_runtime(DEFAULT) == "onnx" and choose_runtime(DEFAULT, "uniform") == "uniform"

    assert example["model"]["runtime"] == "uniform"
    config = _config(**{**example["model"], "path": str(DEFAULT)})
    assert config.model.runtime == "uniform" and ModelConfig(runtime="uniform").runtime
    assert model_problems(config) == []  # check-config asks the runtime which files it needs
    served = load_classifier(config)
    assert served.runtime == "uniform" and served.model_dir == DEFAULT


def test_a_registered_runtime_refuses_settings_it_cannot_run(uniform):
    with pytest.raises(ConfigError) as refused:
        _config(runtime="uniform", device="cuda")
    assert refused.value.errors == ["model: runtime='uniform' runs on the CPU: set model.device "
                                    "cpu"]
    with pytest.raises(ValueError, match="runs on the CPU"):
        runtimes.load(DEFAULT, runtime="uniform", device="cuda")


def test_an_unknown_runtime_is_one_line_naming_the_key_the_value_and_the_runtimes():
    with pytest.raises(ConfigError) as unknown:
        _config(runtime="tflite")
    assert unknown.value.errors == [
        "model.runtime: not a model runtime: pick one of onnx, torch (got 'tflite')"]
    with pytest.raises(ConfigError) as number:
        _config(runtime=3)
    assert number.value.errors == [
        "model.runtime: not a model runtime: pick one of onnx, torch (got 3)"]
    env = config_from_dict({"site": "y", "sensors": SENSORS}, env={})  # unset: the default
    assert env.model.runtime is None


def test_the_unknown_runtime_error_lists_a_registered_one(uniform):
    with pytest.raises(ConfigError) as unknown:
        _config(runtime="tflite")
    assert unknown.value.errors == [
        "model.runtime: not a model runtime: pick one of onnx, torch, uniform (got 'tflite')"]
