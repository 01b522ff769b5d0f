"""UESTC loader: small files of the real layout, and real-data checks when ../shared has them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from slewguard.signal import uestc
from slewguard.signal.datasets import DatasetMissingError
from slewguard.signal.kinematics import preset
from slewguard.signal.uestc import load_uestc, load_uestc_all

HEADER = "file\tclass\tnominal_rpm\tpart\tfs_hz\tn_samples\tsha256"
N_SAMPLES = 20000 * 3  # 3 s per part: one 2 s window each, plus a dropped tail


def make_uestc_tree(root: Path, parts: int = 2) -> Path:
    """Each file's signal carries its class code and speed as a DC level, so a window says where
    it came from."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = [HEADER]
    for ci, cls in enumerate(("Normal", "IR", "OR", "B")):
        for rpm in uestc.UESTC_SPEEDS:
            for part in range(1, parts + 1):
                name = f"{cls[0]}_{rpm}_{part}.mat"
                x = 10 * ci + rpm / 1000 + 0.001 * rng.standard_normal(N_SAMPLES)
                savemat(root / name, {"Data": x[:, None], "SampleFrequency": 20000.0,
                                      "Datacount": N_SAMPLES})
                digest = hashlib.sha256((root / name).read_bytes()).hexdigest()
                lines.append(f"{name}\t{cls}\t{rpm}\t{part}\t20000\t{N_SAMPLES}\t{digest}")
    (root / "MANIFEST.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def root(tmp_path):
    return make_uestc_tree(tmp_path / "uestc")


def test_all_conditions_labelled_and_windowed_per_part(root):
    ws = load_uestc_all(root, window_seconds=2.0)
    assert len(ws) == 4 * 4 * 2  # one window per part
    assert ws.counts() == dict.fromkeys(
        ["healthy", "inner_race", "outer_race", "rolling_element"], 8)
    level = ws.windows.mean(axis=1)
    for lab, rec, rpm, dc in zip(ws.labels, ws.recording, ws.rpm, level, strict=True):
        cls, nominal = rec.removeprefix("uestc-").split("_")
        assert {"N": "healthy", "I": "inner_race", "O": "outer_race",
                "B": "rolling_element"}[cls] == lab
        assert float(nominal) == rpm
        assert dc == pytest.approx(10 * "NIOB".index(cls) + rpm / 1000, abs=0.01)
    assert set(ws.meta["rpm_source"]) == {"nominal"}
    assert ws.bearing == "uestc-uc204" and ws.sample_rate_hz == 20000.0


def test_speed_protocol_keeps_conditions_on_one_side(root):
    split = load_uestc(root, "speed-1000", window_seconds=1.0, hop_seconds=0.5)
    assert set(split.test.rpm) == {1000.0}
    assert 1000.0 not in set(split.train.rpm)
    assert not set(split.train.recording) & set(split.test.recording)
    assert len(split.test) == 4 * 2 * 5  # 3 s part, 1 s window, 0.5 s hop: 5 windows
    assert split.provenance["source"] == "uestc"


def test_errors_name_the_problem(root, tmp_path):
    with pytest.raises(ValueError, match="protocol='speed-900'"):
        load_uestc(root, "speed-900")
    with pytest.raises(DatasetMissingError, match="SLEWGUARD_UESTC_DIR"):
        load_uestc_all(tmp_path / "nowhere")
    (root / "B_800_2.mat").unlink()
    with pytest.raises(DatasetMissingError, match="B_800_2.mat"):
        load_uestc_all(root)


def test_sha256_and_sample_count_are_checked(root):
    savemat(root / "I_800_1.mat", {"Data": np.zeros((N_SAMPLES - 1, 1)),
                                   "SampleFrequency": 20000.0})
    with pytest.raises(ValueError, match="sha256"):
        load_uestc_all(root, verify_sha256=True)
    with pytest.raises(ValueError, match="59999 samples"):
        load_uestc_all(root)


def test_preset_matches_the_readme_geometry():
    o = preset("uestc-uc204").orders()
    got = (o.bpfo_hz, o.bpfi_hz, o.bsf_hz, o.ftf_hz)
    assert got == pytest.approx((3.052, 4.948, 1.993, 0.381), abs=0.002)


REAL = uestc.default_uestc_root()


@pytest.mark.skipif(not (REAL / "MANIFEST.tsv").is_file(),
                    reason=f"real UESTC recordings not found at {REAL} (../shared/data/uestc)")
def test_real_recordings_load_and_speed_fit_finds_the_outer_race_line():
    from slewguard.signal.evidence import extract

    ws = load_uestc_all(REAL, window_seconds=2.0)
    assert len(set(ws.recording)) == 16 and len(ws) == 16 * 3 * 6
    pick = np.flatnonzero(ws.recording == "uestc-O_1400")[:3]
    rows = [extract(ws.windows[i], ws.sample_rate_hz, preset(ws.bearing), ws.rpm[i], 0.08)
            for i in pick]
    # README: O_1400's outer-race line sits at 3.23-3.24 orders of nominal, i.e. +6 %
    for row in rows:
        assert row["speed_scale"] == pytest.approx(3.235 / 3.052, abs=0.01)
        assert row["bpfo_h1_db"] > 15


def test_dataset_uestc_command_writes_a_split(root, tmp_path, capsys):
    from slewguard.cli import main
    from slewguard.signal.datasets import read

    out = tmp_path / "ds"
    assert main(["dataset", "uestc", "--root", str(root), "--protocol", "speed-800",
                 "--window-seconds", "1.0", "--out", str(out)]) == 0
    split = read(out)
    assert set(split.test.rpm) == {800.0} and len(split.test) == 4 * 2 * 3
    assert "uestc-speed-800" in capsys.readouterr().out
