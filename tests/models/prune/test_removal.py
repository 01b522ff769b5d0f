"""The removed record: one ``Removal`` type, read back from the report JSON, old reports too."""

from __future__ import annotations

import dataclasses
import json

import pytest

from slewguard.models.prune.kinds import Removal, Stage, Unit
from slewguard.models.prune.stages import CascadeReport, StageReport


def stage(name: str, granularity: str, removed: list[Removal]) -> StageReport:
    return StageReport(name, "taylor", granularity, removed, 900, 1.25, 0.5, 2,
                       metrics={"accuracy": 0.75}, metrics_before_recovery={"accuracy": 0.5})


def test_removal_normalises_its_fields_and_is_frozen() -> None:
    cut = Removal("kv_group", 2, [3, 1])
    assert cut == Removal(Unit.KV_GROUP, 2, (3, 1))  # the order given is kept
    assert cut.unit is Unit.KV_GROUP and cut.indices == (3, 1)
    assert len({cut, Removal(Unit.KV_GROUP, 2, (3, 1))}) == 1  # hashable: equal ones are one
    assert Removal(Unit.LAYER, None, (1, 2)).layer is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cut.layer = 0  # type: ignore[misc]
    with pytest.raises(ValueError, match="heads"):
        Removal("heads", 0, (1,))  # a stage's name is not a unit


def test_stage_indices_pick_one_unit_in_one_layer() -> None:
    entry = stage("channels", "head+channel", [Removal(Unit.HEAD, 0, (3,)),
                                               Removal(Unit.CHANNEL, 0, (2, 9)),
                                               Removal(Unit.CHANNEL, 1, (5,))])
    assert entry.indices(Unit.HEAD, 0) == (3,)
    assert entry.indices(Unit.CHANNEL, 0) == (2, 9)
    assert entry.indices("channel", 1) == (5,)
    assert entry.indices(Unit.HEAD, 1) == () and entry.indices(Unit.LAYER) == ()
    layers = stage("layers", "layer", [Removal(Unit.LAYER, None, (1, 2))])
    assert layers.indices(Unit.LAYER) == (1, 2)


def test_report_json_round_trip() -> None:
    report = CascadeReport("cascade", 2.5, 1125, False, {"accuracy": 0.875}, stages=[
        stage("layers", "layer", [Removal(Unit.LAYER, None, (1,))]),
        stage("heads", "head", [Removal(Unit.HEAD, 0, (3,)), Removal(Unit.HEAD, 2, (0, 1))]),
        stage("channels", "channel", [])])
    text = json.dumps(report.as_dict())
    data = json.loads(text)
    assert data["final_ratio"] == 1.25
    assert data["stages"][1]["removed"] == [{"unit": "head", "layer": 0, "indices": [3]},
                                            {"unit": "head", "layer": 2, "indices": [0, 1]}]
    assert data["stages"][0]["removed"] == [{"unit": "layer", "layer": None, "indices": [1]}]
    back = CascadeReport.from_dict(data)
    assert back == report
    assert json.dumps(back.as_dict()) == text


def test_reports_written_before_removal_still_read() -> None:
    # the old removed record: a dict keyed by "layers", by the layer index (units of the
    # stage's granularity) or, in the one-shot baselines, by "<layer>:channels"
    old = {"stage": "channels", "criterion": "wanda", "granularity": "kv_group+channel",
           "removed": {"0": [3], "1": [0], "0:channels": [2, 9], "1:channels": [5]},
           "body_parameters": 900, "ratio": 1.5, "seconds": 0.5, "recovery_epochs": 0,
           "metrics": {}, "metrics_before_recovery": {}}
    assert StageReport.from_dict(old).removed == [
        Removal(Unit.KV_GROUP, 0, (3,)), Removal(Unit.KV_GROUP, 1, (0,)),
        Removal(Unit.CHANNEL, 0, (2, 9)), Removal(Unit.CHANNEL, 1, (5,))]
    layers = {**old, "stage": "layers", "granularity": "layer", "removed": {"layers": [1, 2]}}
    assert StageReport.from_dict(layers).indices(Unit.LAYER) == (1, 2)
    assert StageReport.from_dict({**old, "removed": {}}).removed == []


def test_a_stage_report_holds_its_kinds_as_enums_and_writes_them_as_text() -> None:
    entry = stage("heads", "kv_group", [Removal(Unit.KV_GROUP, 0, (1,))])
    assert entry.stage is Stage.HEADS and entry.granularity is Unit.KV_GROUP
    data = entry.as_dict()
    assert type(data["stage"]) is str and type(data["granularity"]) is str  # YAML-safe text
    assert (data["stage"], data["granularity"]) == ("heads", "kv_group")
    back = StageReport.from_dict(json.loads(json.dumps(data)))
    assert back.stage is Stage.HEADS and back.granularity is Unit.KV_GROUP
    # the one-shot baselines remove two kinds in one stage: their granularity stays text
    both = stage("channels", "head+channel", [])
    assert both.stage is Stage.CHANNELS and both.granularity == "head+channel"
    assert both.as_dict()["granularity"] == "head+channel"
    with pytest.raises(ValueError, match="vocab"):
        stage("vocab", "layer", [])  # not a cascade stage
