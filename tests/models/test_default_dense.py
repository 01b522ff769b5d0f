"""`build-default-model --keep-dense`: the dense model the shipped build prunes, saved beside it."""

from __future__ import annotations

import json

import pytest

from slewguard import models
from slewguard.cli import main
from slewguard.models.calibrate import card_temperature
from slewguard.models.prune import measure


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("keep-dense")
    assert main(["build-default-model", "--quick", "--out", str(root / "pruned"), "--seed", "2",
                 "--keep-dense", str(root / "dense")]) == 0
    return root / "pruned", root / "dense"


def test_dense_model_is_the_one_the_build_pruned(built):
    pruned_dir, dense_dir = built
    pruned_card = json.loads((pruned_dir / "card.json").read_text())
    dense_card = json.loads((dense_dir / "card.json").read_text())
    dense, pruned = models.load(dense_dir), models.load(pruned_dir, runtime="torch")
    assert dense.classes == pruned.classes
    assert measure.body_parameters(dense.model) == pruned_card["compression"]["dense_body"]
    assert measure.body_parameters(pruned.model) < measure.body_parameters(dense.model)
    assert dense_card["metrics"]["accuracy"] == pruned_card["accuracy_dense"]
    assert dense_card["command"].endswith(f"--keep-dense {dense_dir}")
    assert "--keep-dense" not in pruned_card["command"]  # the shipped model does not depend on it


def test_dense_model_carries_its_own_calibration_and_the_shared_trust(built):
    pruned_dir, dense_dir = built
    card = json.loads((dense_dir / "card.json").read_text())
    record = card["calibration"]
    assert card_temperature(card) == (record["temperature_fitted"] if record["applied"] else 1.0)
    assert record["reason"] and record["n_heldout"] > 0
    # OOD detector and kinematic thresholds come from the features: the same for both models
    assert (dense_dir / "ood.json").read_text() == (pruned_dir / "ood.json").read_text()
    pruned_card = json.loads((pruned_dir / "card.json").read_text())
    assert card["trust"]["kinematic_min_db"] == pruned_card["trust"]["kinematic_min_db"]


def test_keep_dense_into_the_output_directory_is_refused(tmp_path, capsys):
    code = main(["build-default-model", "--quick", "--out", str(tmp_path),
                 "--keep-dense", str(tmp_path)])
    assert code != 0 and "is the --out directory: pass another DIR" in capsys.readouterr().err
    assert not (tmp_path / "card.json").exists()
