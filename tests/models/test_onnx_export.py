"""model.onnx: exported in forward's input order, checked against torch, refused when wrong."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from slewguard import models
from slewguard.cli import main
from slewguard.models import backbones, onnx_export, shipped
from slewguard.models.classifier import FaultClassifier
from slewguard.signal import textify
from slewguard.signal.features import FEATURE_NAMES, FeatureTable

CLASSES = ["healthy", "inner_race", "outer_race", "rolling_element"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def feature_texts(n: int = 12, seed: int = 0) -> list[str]:
    """textify texts of random feature rows, plus cut ones so that batches need padding."""
    values = np.random.default_rng(seed).normal(size=(n, len(FEATURE_NAMES))) * 10
    texts = textify.textify_table(FeatureTable(FEATURE_NAMES, values))
    return texts + [" ".join(t.split()[:k]) for t, k in zip(texts, (1, 3, 7, 11), strict=False)]


def saved_tiny(family: str, path):
    torch.manual_seed(0)
    bb = backbones.from_scratch(family, len(CLASSES), vocabulary=textify.vocabulary())
    FaultClassifier(bb.model, bb.tokenizer, CLASSES, textify.TEMPLATE_VERSION,
                    {"family": family, "base_model": "random init (tests)"}).save(path)
    return path


def test_input_names_follow_forward_not_the_tokenizer():
    clf = models.load(shipped.shipped_model_dir("default"), runtime="torch")
    given = list(clf.encode(["rms 4"]))
    assert given == ["input_ids", "token_type_ids", "attention_mask"]  # the tokenizer's order
    assert onnx_export.forward_input_names(clf.model, given) == [
        "input_ids", "attention_mask", "token_type_ids"]


@pytest.mark.parametrize("family", ["tiny-bert", "tiny-gpt2", "tiny-llama"])
def test_export_matches_torch_and_records_the_card(family, tmp_path):
    path = saved_tiny(family, tmp_path / family)
    texts = feature_texts()
    section = onnx_export.export_onnx(path, texts, "random feature rows")
    card = json.loads((path / "card.json").read_text())
    assert card["onnx"] == section
    assert section["max_abs_logit_diff"] <= onnx_export.MAX_LOGIT_DIFF
    assert section["ids_identical"] and section["argmax_agreement"] == 1.0
    assert section["opset"] == onnx_export.OPSET and section["n_texts"] == len(texts)
    assert section["onnxruntime_version"] != "not installed"
    served = models.load(path)  # model.onnx there: the onnx runtime by default
    reference = models.load(path, runtime="torch")
    assert served.runtime == "onnx"
    batch = texts[:16]  # another batch shape than the export's sample (2, T)
    np.testing.assert_allclose(served.predict_proba(batch), reference.predict_proba(batch),
                               atol=1e-5)
    assert "## ONNX" in (path / "README.md").read_text()


def test_inputs_labelled_in_the_tokenizers_order_are_caught(tmp_path):
    """The pitfall: BERT graph inputs named input_ids, token_type_ids, attention_mask while
    forward takes (input_ids, attention_mask, token_type_ids) silently swap mask and segment
    ids. The parity check refuses the graph and leaves no model.onnx behind."""
    path = tmp_path / "default"
    shutil.copytree(shipped.shipped_model_dir("default"), path)
    (path / "model.onnx").unlink()
    with pytest.raises(ValueError, match="must follow forward's order"):
        onnx_export.export_onnx(path, feature_texts(), "random feature rows",
                                graph_names=["input_ids", "token_type_ids", "attention_mask"])
    assert not (path / "model.onnx").exists()
    assert models.load(path).runtime == "torch"  # nothing to serve with onnx


def test_a_graph_that_only_rounds_beyond_the_tolerance_is_not_blamed_on_its_inputs(
        tmp_path, monkeypatch):
    """Same ids, same classes, a logit difference over the tolerance: the refusal says it is
    rounding and to serve on torch, not that the inputs are mislabelled."""
    path = tmp_path / "default"
    shutil.copytree(shipped.shipped_model_dir("default"), path)
    (path / "model.onnx").unlink()
    monkeypatch.setattr(onnx_export, "MAX_LOGIT_DIFF", 0.0)  # any rounding is over it
    with pytest.raises(ValueError, match="float rounding") as refused:
        onnx_export.export_onnx(path, feature_texts(), "random feature rows")
    assert "forward's order" not in str(refused.value) and "model.runtime: torch" in str(
        refused.value)
    assert not (path / "model.onnx").exists()


def test_export_command_writes_the_graph_for_an_older_directory(tmp_path, capsys):
    path = saved_tiny("tiny-bert", tmp_path / "old")
    assert main(["export", str(path)]) == 0
    assert "max |logit difference|" in capsys.readouterr().out
    card = json.loads((path / "card.json").read_text())
    assert card["onnx"]["texts"].startswith("simulated, ")
    assert card["onnx"]["max_abs_logit_diff"] <= onnx_export.MAX_LOGIT_DIFF


@pytest.mark.parametrize("name", list(shipped.SHIPPED_MODELS))
def test_shipped_models_carry_their_checked_graph(name):
    folder = shipped.shipped_model_dir(name)
    card = json.loads((folder / "card.json").read_text())
    assert (folder / "model.onnx").stat().st_size == card["onnx"]["bytes"] < 10 * 1024 * 1024
    assert card["onnx"]["max_abs_logit_diff"] <= onnx_export.MAX_LOGIT_DIFF
    assert card["onnx"]["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]


def test_the_export_does_not_log_about_ops_no_model_uses(tmp_path, caplog):
    path = saved_tiny("tiny-bert", tmp_path / "m")
    with caplog.at_level(logging.INFO):
        assert main(["export", str(path)]) == 0
    assert not [r.getMessage() for r in caplog.records if "torchvision" in r.getMessage()]
    assert logging.getLogger("torch.onnx._internal.exporter._registration").level == \
        logging.NOTSET  # put back as it was
