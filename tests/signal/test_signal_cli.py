import numpy as np

from slewguard.cli import main
from slewguard.signal.datasets import read
from tests.signal.test_datasets import make_cwru_tree

SMALL = ["--windows-per-class", "3", "--window-seconds", "10", "--sample-rate-hz", "2000",
         "--rpm-min", "6", "--quiet"]


def test_dataset_simulate_then_info(tmp_path, capsys):
    out = tmp_path / "sim"
    code = main(["dataset", "simulate", "--out", str(out), *SMALL, "--class", "healthy",
                 "--class", "outer_race", "--bearing", "slew-xr-1000", "--seed", "7"])
    assert code == 0
    split = read(out)
    assert split.train.counts() == {"healthy": 2, "outer_race": 2}
    assert split.test.counts() == {"healthy": 1, "outer_race": 1}
    assert split.train.bearing == "slew-xr-1000" and split.train.sample_rate_hz == 2000
    assert split.provenance["spec"]["seed"] == 7
    capsys.readouterr()
    assert main(["dataset", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "outer_race" in text and "2000 Hz" in text and '"seed": 7' in text
    assert main(["dataset", "plot", str(out), "--out", str(tmp_path / "sim.png")]) == 0
    assert (tmp_path / "sim.png").read_bytes()[:4] == b"\x89PNG"
    # the same command line again gives the same arrays
    assert main(["dataset", "simulate", "--out", str(tmp_path / "again"), *SMALL, "--class",
                 "healthy", "--class", "outer_race", "--bearing", "slew-xr-1000",
                 "--seed", "7"]) == 0
    np.testing.assert_array_equal(read(tmp_path / "again").test.windows, split.test.windows)


def test_dataset_cwru_writes_the_protocol(tmp_path, capsys):
    root = make_cwru_tree(tmp_path / "cwru")
    out = tmp_path / "out"
    code = main(["dataset", "cwru", "--protocol", "paper-4class", "--root", str(root),
                 "--out", str(out), "--window-seconds", "0.01"])
    assert code == 0
    split = read(out)
    assert split.name == "cwru-paper-4class" and split.train.sample_rate_hz == 12000
    assert split.test.counts()["healthy"] == 4
    assert "does NOT change load" in capsys.readouterr().out


def test_bad_input_is_one_clean_error(tmp_path, capsys):
    assert main(["dataset", "info", str(tmp_path / "missing")]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert main(["dataset", "simulate", "--out", str(tmp_path / "x"), "--rpm-min", "5",
                 "--rpm-max", "2"]) == 2
    err = capsys.readouterr().err
    assert "rpm_min=5.0 > rpm_max=2.0" in err and "errors.pydantic.dev" not in err
    assert main(["dataset", "cwru", "--root", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "y")]) == 2
    assert "SLEWGUARD_CWRU_DIR" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_bearings_lists_presets_with_orders(capsys):
    assert main(["bearings"]) == 0
    text = capsys.readouterr().out
    assert "cwru-6205" in text and "slew-4pc-1000" in text
    assert "3.585" in text and "5.415" in text  # CWRU BPFO / BPFI orders (PAPER.md)
    assert main(["bearings", "--rpm", "1"]) == 0
    assert "0.6073" in capsys.readouterr().out  # slew-4pc-1000 BPFO at 1 rpm
