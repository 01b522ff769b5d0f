"""bench/bench_transfer.py end to end on a small scale: every case, every method, the table and
the plot (the real rigs are needed: skipped with the reason when ../shared is absent)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from slewguard.signal.cwru import default_cwru_root
from slewguard.signal.uestc import default_uestc_root

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_transfer",
                                                  ROOT / "bench" / "bench_transfer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (default_cwru_root().is_dir() and default_uestc_root().is_dir()),
                    reason="real CWRU and UESTC recordings not found at ../shared/data")
def test_every_case_and_method_is_scored_split_by_recording(tmp_path):
    bench = _bench()
    args = argparse.Namespace(seeds=1, machines=4, per_class=1, lm="sim", lm_quick=True,
                              in_domain=False, progress=False, out=tmp_path)
    out = bench.run(args)
    cases = {(r["held_out"], r["train"]) for r in out["runs"]}
    assert cases == {("sim", "cwru+uestc"), ("cwru", "sim+uestc"), ("uestc", "sim+cwru"),
                     ("cwru", "sim"), ("uestc", "sim")}
    methods = {r["method"] for r in out["runs"] if r["train"] == "sim"}
    assert {"envelope_rule", "logistic", "logistic_t3", "gradient_boosting", "lm_dense",
            "lm_pruned_2x"} <= methods  # --lm-quick prunes its tiny model 2x
    for r in out["runs"]:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["useful_call_rate"] <= r["accuracy"] + 1e-9
        assert set(r["recall"]) <= {"healthy", "inner_race", "outer_race", "rolling_element"}
    cwru = [r for r in out["runs"] if r["held_out"] == "cwru" and r["method"] == "envelope_rule"]
    assert all(r["n_healthy"] > 0 and r["healthy_false_alarm"] is not None for r in cwru)
    table = bench._table(out)
    assert table.count("\n") == len({(r["held_out"], r["train"], r["method"])
                                     for r in out["runs"]}) + 1
    bench._plot(out, tmp_path / "transfer.png")
    assert (tmp_path / "transfer.png").stat().st_size > 20_000


@pytest.mark.skipif(not (default_cwru_root().is_dir() and default_uestc_root().is_dir()),
                    reason="real CWRU and UESTC recordings not found at ../shared/data")
def test_in_domain_is_cwru_load_transfer_without_shared_recordings(tmp_path):
    bench = _bench()
    args = argparse.Namespace(seeds=1, machines=4, per_class=1, lm=None, lm_quick=True,
                              in_domain=True, progress=False, out=tmp_path)
    out = bench.run(args)  # run() asserts no recording on both sides
    assert {(r["held_out"], r["train"]) for r in out["runs"]} == {("cwru-3hp", "cwru-0-2hp")}
    assert all(r["n"] == 90 and r["n_healthy"] == 0 for r in out["runs"])
