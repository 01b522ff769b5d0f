"""The default-model build (``--quick``, end to end) and the model shipped in the package."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from slewguard import models
from slewguard.cli import main
from slewguard.models import build_config, build_data, build_evidence, default, shipped
from slewguard.models.ood import OodDetector
from slewguard.signal import datasets, textify, textify_evidence

# Both shipped models with their float32 model.onnx (7.2 MB each, issue 18) came to 24.6 MB.
MAX_BYTES = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def quick_model(tmp_path_factory):
    """`slewguard build-default-model --quick` into a fresh directory, through the real CLI."""
    out = tmp_path_factory.mktemp("default")
    assert main(["build-default-model", "--quick", "--out", str(out), "--seed", "1",
                 "--features", "stft", "--weights-dtype", "bfloat16"]) == 0
    return out


@pytest.fixture(scope="module")
def quick_t3_model(tmp_path_factory):
    """`build-default-model --quick --template t3` on the simulator alone (no rig data)."""
    out = tmp_path_factory.mktemp("t3")
    runs = [{"seed": seed, "held_out": "cwru", "train": "sim", "method": method, "accuracy": acc,
             "healthy_false_alarm": 0.0, "useful_call_rate": acc - 0.1}
            for seed in (0, 1, 2) for method, acc in (("lm_pruned_2x", 0.8 + seed / 100),
                                                      ("envelope_rule", 0.88))]
    (out / "transfer.json").write_text(json.dumps({"runs": runs}))
    config = build_config.BuildConfig.for_mode(True, template="t3", show_progress=False,
                                          cwru_root=out / "no-cwru", uestc_root=out / "no-uestc",
                                          transfer_results=out / "transfer.json")
    default.build(config, out / "model", command="slewguard build-default-model --template t3")
    return out / "model"


def test_quick_t3_build_reads_the_evidence_and_records_it(quick_t3_model):
    card = json.loads((quick_t3_model / "card.json").read_text())
    assert card["template_version"] == textify_evidence.TEMPLATE_VERSION
    assert card["build"]["template"] == "t3" and "--template t3" in card["command"]
    assert card["trust"]["kinematic_min_db"] is None  # the lines are the model's own input
    detector = OodDetector.load(quick_t3_model / "ood.json")
    assert detector.names == build_evidence.TRUST_INPUTS and detector.threshold is not None
    assert [s["name"] for s in card["data"]] == ["simulated"]
    assert any("cwru recordings absent" in n for n in card["build"]["notes"])
    assert set(card["metrics"]["accuracy"]) == {"train", "calib", "test-sim"}
    # the simplest baseline on the same splits, and the recipe's leave-one-rig-out numbers
    assert set(card["envelope_rule_accuracy"]) == set(card["metrics"]["accuracy"])
    row, = card["leave_one_rig_out"]["rows"]
    assert (row["held_out"], row["trained_on"]) == ("cwru", "sim")
    assert row["lm_pruned_2x"] == {"accuracy": 0.81, "healthy_false_alarm": 0.0,
                                   "useful_call_rate": 0.71, "seeds": 3}
    assert row["envelope_rule"]["accuracy"] == 0.88 and "gradient_boosting" not in row
    readme = (quick_t3_model / "README.md").read_text()
    assert "| cwru | sim | 81.0% / 0.0% / 71.0% | 88.0% / 0.0% / 78.0% | - |" in readme
    assert "bench/bench_transfer.py --lm all" in readme and "envelope rule on the same" in readme
    clf = models.load(quick_t3_model)  # the ONNX runtime, its graph checked on t3 texts
    assert clf.runtime == "onnx" and card["onnx"]["n_texts"] > 0
    probs = clf.predict_proba(["outer 9 inner 0 level 2", "outer 0 inner 0 level nobase"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_quick_build_loads_and_predicts(quick_model):
    clf = models.load(quick_model)
    assert clf.classes == list(build_config.CLASSES)
    assert clf.template_version == textify.TEMPLATE_VERSION
    texts = [textify.textify(dict.fromkeys(textify.TEXT_FEATURES, 0.0) | {"rpm": 6.0})] * 3
    probs = clf.predict_proba(texts)
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert set(clf.predict(texts)) <= set(build_config.CLASSES)


def test_quick_build_card_records_the_build(quick_model):
    card = json.loads((quick_model / "card.json").read_text())
    assert card["command"].startswith("slewguard build-default-model --seed 1 --out ")
    assert "--quick" in card["command"] and "--seed 1" in card["command"]
    assert card["template_version"] == textify.TEMPLATE_VERSION
    assert card["features"] == "stft" and "--features stft" in card["command"]
    assert "--weights-dtype bfloat16" in card["command"]
    assert card["build"]["weights_dtype"] == "bfloat16"
    assert card["compression"]["ratio"] == pytest.approx(2.0, rel=0.05)
    assert card["compression"]["pruned_body"] < card["compression"]["dense_body"]
    assert set(card["accuracy_dense"]) == set(card["metrics"]["accuracy"])
    assert {"train", "calib", "test-sim", "test-fleet"} <= set(card["metrics"]["accuracy"])
    assert card["calibration"]["temperature"] > 0
    assert card["data"][0]["name"] == "simulated" and card["data"][0]["n_train"] > 0
    assert "Default-model build" in (quick_model / "README.md").read_text()


def test_bfloat16_build_stores_bfloat16_and_loads_as_asked(quick_model):
    from safetensors import safe_open

    with safe_open(quick_model / "model.safetensors", "pt") as fh:
        names = fh.keys()  # a safetensors handle, not a dict
        dtypes = {str(fh.get_tensor(name).dtype) for name in names}
    assert dtypes == {"torch.bfloat16"}
    clf = models.load(quick_model, runtime="torch")  # float32 by default: stored, widened
    weights = [p for p in clf.model.parameters() if p.is_floating_point()]
    assert {p.dtype for p in weights} == {torch.float32}
    assert all(torch.equal(p, p.to(torch.bfloat16).float()) for p in weights)


def test_round_weights_keeps_dtype_and_rounds_to_storage_precision():
    layer = torch.nn.Linear(4, 3)
    before = layer.weight.detach().clone()
    default.round_weights(layer, "bfloat16")
    assert layer.weight.dtype == torch.float32
    assert torch.equal(layer.weight, before.to(torch.bfloat16).float())
    assert not torch.equal(layer.weight, before)  # random float32 values do not survive
    default.round_weights(layer, "float32")
    assert torch.equal(layer.weight, before.to(torch.bfloat16).float())


def test_unknown_weights_dtype_and_shipped_name_are_refused():
    with pytest.raises(ValueError, match="weights_dtype='int8'.*float32, bfloat16"):
        build_config.BuildConfig.for_mode(quick=True, weights_dtype="int8")
    with pytest.raises(ValueError, match="'tiny'.*default, fast"):
        shipped.load_default(name="tiny")


def test_quick_build_writes_a_checked_onnx_graph_served_by_default(quick_model):
    card = json.loads((quick_model / "card.json").read_text())
    assert (quick_model / "model.onnx").is_file()
    assert card["onnx"]["max_abs_logit_diff"] <= 1e-4 and card["onnx"]["ids_identical"]
    assert card["onnx"]["texts"].startswith("build test splits: test-sim ")
    assert card["onnx"]["n_texts"] == card["data"][0]["n_test"] + card["data"][1]["n_test"] + (
        card["data"][2]["n_test"] if len(card["data"]) > 2 else 0)
    assert "## ONNX" in (quick_model / "README.md").read_text()
    texts = [textify.textify(dict.fromkeys(textify.TEXT_FEATURES, 1.0) | {"rpm": 6.0})] * 2
    served, reference = models.load(quick_model), models.load(quick_model, runtime="torch")
    assert (served.runtime, reference.runtime) == ("onnx", "torch")
    np.testing.assert_allclose(served.predict_proba(texts), reference.predict_proba(texts),
                               atol=1e-5)


def test_quick_build_stores_the_ood_detector(quick_model):
    from slewguard.models.ood import OodDetector

    card = json.loads((quick_model / "card.json").read_text())
    detector = OodDetector.load(quick_model / card["trust"]["ood_file"])
    assert detector.threshold is not None and detector.n_fit > 0
    assert set(card["trust"]["kinematic_min_db"]) <= set(build_config.CLASSES) - {"healthy"}


def test_vocabulary_is_trimmed_to_what_textify_writes(quick_model):
    clf = models.load(quick_model, runtime="torch")
    rows = clf.model.get_input_embeddings().weight.shape[0]
    assert rows <= len(textify.vocabulary()) + len(clf.tokenizer.all_special_tokens)
    ids = clf.tokenizer(" ".join(textify.vocabulary()))["input_ids"]
    assert clf.tokenizer.unk_token_id not in ids


def test_featurize_gives_the_texts_of_to_texts():
    spec = datasets.SimulatedDatasetSpec(classes=("healthy", "outer_race"), windows_per_class=2,
                                         window_seconds=8.0, rpm_min=4.0, seed=5,
                                         bearings=("slew-4pc-1000", "slew-xr-1000"))
    ws = datasets.simulate_dataset(spec, progress=False).train
    texts = build_data.featurize(ws, "train", progress=False)
    assert texts.texts == datasets.to_texts(ws, progress=False)
    fast = build_data.featurize(ws, "train", progress=False, method="stft")
    assert fast.texts == datasets.to_texts(ws, progress=False, method="stft")
    assert not np.array_equal(fast.features, texts.features)
    assert texts.features.shape[0] == len(ws) and texts.labels == ws.labels.tolist()


def test_holdout_is_stratified_and_disjoint():
    ws = datasets.simulate_dataset(datasets.SimulatedDatasetSpec(
        classes=("healthy", "inner_race"), windows_per_class=6, window_seconds=8.0,
        rpm_min=4.0), progress=False).train
    keep, held = build_data.holdout(ws, 0.3, seed=0)
    assert not set(keep) & set(held) and len(keep) + len(held) == len(ws)
    assert set(ws.labels[held]) == {"healthy", "inner_race"}


def test_bad_target_ratio_is_refused():
    with pytest.raises(ValueError, match="target_ratio"):
        build_config.BuildConfig.for_mode(quick=True, target_ratio=0.5)


def is_built(name: str) -> bool:
    return (shipped.shipped_model_dir(name) / "card.json").is_file()


SHIPPED = [pytest.param(name, marks=pytest.mark.skipif(
    not is_built(name), reason=f"no {name} model shipped in slewguard/models/{name} yet: build it "
    "with `slewguard build-default-model` (docs/models.md: the shipped models)"))
    for name in shipped.SHIPPED_MODELS]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_small_and_current(name):
    folder = shipped.shipped_model_dir(name)
    card = json.loads((folder / "card.json").read_text())
    # the shipped models read the rig-invariant evidence (docs/transfer.md)
    assert card["template_version"] == textify_evidence.TEMPLATE_VERSION, (
        f"textify_evidence changed since the {name} model was built: rerun the command in "
        "its card")
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert size < MAX_BYTES
    expected = {"default": 8.7, "fast": 13.8}[name]
    assert card["compression"]["ratio"] == pytest.approx(expected, rel=0.05)
    assert {"test-sim", "test-cwru", "test-uestc"} <= set(card["metrics"]["accuracy"])


def test_shipped_models_together_stay_under_the_package_budget():
    """Every shipped model stays in git history: together they stay under 32 MB."""
    files = [f for d in shipped.SHIPPED_MODELS.values() if d.is_dir() for f in d.iterdir()]
    assert sum(f.stat().st_size for f in files if f.is_file()) < MAX_BYTES


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_classifies_fresh_windows(name):
    """Randomised simulated machines of a seed the build never used, through the evidence."""
    clf = shipped.load_default(name=name)
    table = build_evidence.evidence_table(build_evidence.sim_sets(8, 987, 3), "sim")
    texts = [textify_evidence.textify(row) for row in table.rows()]
    predicted = np.array(clf.predict(texts))
    accuracy = float(np.mean(predicted == table.y))
    assert accuracy > 0.55, f"accuracy {accuracy:.2f} on {len(table)} fresh windows"
    # the simulator's healthy windows drift in level and carry non-periodic bursts: the
    # envelope rule calls ~35 % of them faulty (docs/transfer.md); a model calling most of
    # them faulty has lost the healthy class
    assert np.mean(predicted[table.y == "healthy"] != "healthy") < 0.5
    for label in build_config.CLASSES:  # every class is recognised at least once
        assert (predicted[table.y == label] == label).any(), label


@pytest.mark.parametrize("name", list(shipped.SHIPPED_MODELS))
def test_quick_refuses_to_overwrite_a_shipped_model(name, capsys):
    args = [] if name == "default" else ["--out", str(shipped.shipped_model_dir(name))]
    assert main(["build-default-model", "--quick", *args]) == 2
    assert "--out" in capsys.readouterr().err
