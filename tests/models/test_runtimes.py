"""Runtimes chosen by key: same ids, probabilities and trust in both; onnx without torch."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from slewguard import models
from slewguard.models import runtimes, shipped
from slewguard.models.onnx_export import evidence_texts
from slewguard.models.runtimes import onnx as onnx_runtime
from slewguard.service.trust import load_trust
from slewguard.signal import datasets
from tests.models.no_torch import blocked_env
from tests.models.test_onnx_export import feature_texts, saved_tiny

SHIPPED = list(shipped.SHIPPED_MODELS)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    spec = datasets.SimulatedDatasetSpec(windows_per_class=4, window_seconds=10.0, rpm_min=4.0,
                                         seed=77)
    path = tmp_path_factory.mktemp("data") / "sim"
    datasets.write(datasets.simulate_dataset(spec, progress=False), path)
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_tokenizers_gives_the_ids_transformers_gives(name, dataset_dir):
    path = shipped.shipped_model_dir(name)
    reference = models.load(path, runtime="torch")
    ws = datasets.read(dataset_dir).test
    texts = datasets.to_texts(ws, progress=False, method=reference.card["features"])
    texts += evidence_texts()[0]  # the t3 texts the shipped models read
    texts += feature_texts()  # cut texts: padding and masks
    texts += [" ".join(["kurt 9"] * 80)]  # longer than max_length: truncation
    served = models.load(path, runtime="onnx")
    fed, expected = served.encode(texts), reference.encode(texts)
    assert list(fed) == ["input_ids", "attention_mask", "token_type_ids"]
    assert set(fed) == set(expected)
    for key in fed:
        assert np.array_equal(fed[key], expected[key].numpy()), key
    assert fed["input_ids"].shape[1] == reference.max_length  # truncated at the card's 64


def test_tokenizer_ids_match_for_a_word_level_gpt2(tmp_path):
    path = saved_tiny("tiny-gpt2", tmp_path / "gpt2")
    reference = models.load(path, runtime="torch")
    texts = feature_texts()
    tokenizer = onnx_runtime.load_tokenizer(path, reference.max_length)
    got = tokenizer.encode_batch(texts)
    expected = reference.encode(texts)
    assert np.array_equal([e.ids for e in got], expected["input_ids"].numpy())
    assert np.array_equal([e.attention_mask for e in got], expected["attention_mask"].numpy())


@pytest.mark.parametrize("name", SHIPPED)
def test_both_runtimes_agree_and_carry_the_same_trust(name, dataset_dir):
    served = shipped.load_default(name=name)  # float32 on the CPU: onnx by default
    reference = shipped.load_default(name=name, runtime="torch")
    assert (served.runtime, reference.runtime) == ("onnx", "torch")
    assert served.classes == reference.classes and served.card == reference.card
    ws = datasets.read(dataset_dir).test
    texts = datasets.to_texts(ws, progress=False, method=served.card["features"])
    texts += evidence_texts()[0]
    np.testing.assert_allclose(served.predict_proba(texts), reference.predict_proba(texts),
                               atol=1e-5)
    a, b = load_trust(served), load_trust(reference)
    assert a.detector is not None and a.detector.threshold == b.detector.threshold
    assert (a.temperature, a.min_db) == (b.temperature, b.min_db)
    assert np.array_equal(a.detector.lo, b.detector.lo)


def test_runtime_choice_and_its_errors(tmp_path):
    default = shipped.shipped_model_dir("default")
    assert runtimes.choose_runtime(default) == "onnx"
    assert runtimes.choose_runtime(default, dtype="bfloat16") == "torch"
    assert runtimes.choose_runtime(default, device="cuda") == "torch"
    assert shipped.load_default(dtype="bfloat16").runtime == "torch"
    with pytest.raises(ValueError, match="runtime='tflite'.*onnx, torch"):
        runtimes.choose_runtime(default, "tflite")
    with pytest.raises(ValueError, match="dtype='bfloat16'.*model.runtime torch"):
        runtimes.choose_runtime(default, "onnx", dtype="bfloat16")
    bare = tmp_path / "bare"
    shutil.copytree(default, bare)
    (bare / "model.onnx").unlink()
    assert runtimes.choose_runtime(bare) == "torch"
    with pytest.raises(ValueError, match="slewguard export"):
        models.load(bare, runtime="onnx")


def test_predict_runs_on_onnx_with_torch_unimportable(tmp_path, dataset_dir):
    env = blocked_env(tmp_path)
    blocked = subprocess.run([sys.executable, "-c", "import transformers"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert blocked.returncode != 0 and "blocked" in blocked.stderr  # the blocker works
    model = shipped.shipped_model_dir("default")
    for flags in (["--runtime", "onnx"], []):  # explicit, and the default for this model
        out = subprocess.run(
            [sys.executable, "-m", "slewguard.cli", "predict", str(model), "--data",
             str(dataset_dir), *flags], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "(onnx runtime)" in out.stdout and "accuracy" in out.stdout
    torch_run = subprocess.run(
        [sys.executable, "-m", "slewguard.cli", "predict", str(model), "--data",
         str(dataset_dir), "--runtime", "torch"], env=env, capture_output=True, text=True,
        timeout=300)
    assert torch_run.returncode == 2  # torch really is gone: one line, no traceback
    assert torch_run.stderr.strip() == ("slewguard predict (torch runtime) needs the training "
                                        "extra: pip install 'slewguard[training]'")
