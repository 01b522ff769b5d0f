import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.signal

from slewguard.signal import cwru as cwru_data
from slewguard.signal import datasets
from slewguard.signal.cwru import load_cwru
from slewguard.signal.datasets import SimulatedDatasetSpec, read, simulate_dataset, write

# A miniature CWRU tree: the real layout and key names, 1300 samples per 12 kHz file.
FAULT_N = 1300
FAULT_FILE_NO = {("IR", "007"): 105, ("B", "007"): 118, ("OR", "007"): 130,
                 ("IR", "021"): 209, ("B", "021"): 222, ("OR", "021"): 234}
RPM_BY_LOAD = {0: 1797, 1: 1772, 2: 1750, 3: 1725}
MANIFEST_HEADER = ("file\tclass\tfault_size_in\tload_hp\trpm\tn_samples\tfs_hz_actual\tde_key\t"
                   "cwru_file_no\tsha256")
REAL_CWRU = Path(os.environ.get("SLEWGUARD_CWRU_DIR")
                 or Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cwru")


def _write_mat(root: Path, name: str, no: int, x: np.ndarray, rpm: int, decoy: bool = False):
    data = {f"X{no:03d}_DE_time": x[:, None], f"X{no:03d}_FE_time": -x[:, None],
            f"X{no:03d}RPM": np.array([[rpm]], dtype=np.uint16)}
    if decoy:  # like the original 99.mat: another recording's variables in the same file
        data["X098_DE_time"] = np.full((len(x), 1), 1e6)
    scipy.io.savemat(root / name, data)
    digest = hashlib.sha256((root / name).read_bytes()).hexdigest()
    return digest


def _normal_48k() -> np.ndarray:
    t = np.arange(4 * FAULT_N) / 48000.0
    return np.sin(2 * np.pi * 100 * t) + np.sin(2 * np.pi * 20000 * t)  # 20 kHz must go


@pytest.fixture
def cwru_root(tmp_path):
    return make_cwru_tree(tmp_path)


def make_cwru_tree(root: Path) -> Path:
    """Fault signals hold their file number as a DC level, so a window tells where it came from."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = [MANIFEST_HEADER]
    for (cls, size), base in FAULT_FILE_NO.items():
        for load in range(4):
            no, name = base + load, f"12k_DE_{cls}_{size}_{load}.mat"
            x = no + 0.01 * rng.standard_normal(FAULT_N)
            digest = _write_mat(root, name, no, x, RPM_BY_LOAD[load])
            lines.append(f"{name}\t{cls}\t0.{size}\t{load}\t{RPM_BY_LOAD[load]}\t{FAULT_N}\t12000\t"
                         f"X{no}_DE_time\t{no}\t{digest}")
    digest = _write_mat(root, "12k_DE_Normal_0.mat", 97, _normal_48k(), 1796, decoy=True)
    lines.append(f"12k_DE_Normal_0.mat\tNormal\t0\t0\t1796\t{4 * FAULT_N}\t48000\t"
                 f"X097_DE_time\t97\t{digest}")
    (root / "MANIFEST.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_faults_3class_labels_loads_and_split_by_recording(cwru_root):
    split = load_cwru(cwru_root, "faults-3class", window_seconds=0.01)
    # 1300 samples, 120-sample windows -> 10 each; 2 sizes x 3 loads train, 2 sizes x 1 load test
    assert split.train.counts() == {"inner_race": 60, "outer_race": 60, "rolling_element": 60}
    assert split.test.counts() == {"inner_race": 20, "outer_race": 20, "rolling_element": 20}
    assert set(split.train.load_hp) == {0, 1, 2} and set(split.test.load_hp) == {3}
    assert not set(split.train.recording) & set(split.test.recording)
    assert split.train.windows.dtype == np.float32 and split.train.windows.shape[1] == 120
    # each window came from the file its metadata names, with that file's rpm and label
    for ws in (split.train, split.test):
        levels = np.rint(ws.windows.mean(axis=1)).astype(int)
        for level, rec, label, rpm, load, size in zip(
            levels, ws.recording, ws.labels, ws.rpm, ws.load_hp, ws.fault_size_in, strict=True
        ):
            cls, size_code, load_code = rec.split("_")[2:]
            assert level == FAULT_FILE_NO[(cls, size_code)] + int(load_code)
            assert label == cwru_data.CWRU_CLASSES[cls]
            assert rpm == RPM_BY_LOAD[int(load_code)] and load == int(load_code)
            assert size == pytest.approx(float("0." + size_code))


def test_paper_4class_normal_is_decimated_and_time_split(cwru_root):
    split = load_cwru(cwru_root, "paper-4class", window_seconds=0.01)
    assert split.classes == ["healthy", "inner_race", "outer_race", "rolling_element"]
    assert "does NOT change load" in split.note
    decimated = scipy.signal.decimate(_normal_48k(), 4)
    assert len(decimated) == FAULT_N  # 48 kHz -> 12 kHz
    cut = round(0.6 * FAULT_N)  # 780 samples train (6 windows), 520 test (4 windows)
    train = split.train.subset(split.train.labels == "healthy")
    test = split.test.subset(split.test.labels == "healthy")
    assert (len(train), len(test)) == (6, 4)
    np.testing.assert_allclose(train.windows[0], decimated[:120], atol=1e-6)
    np.testing.assert_allclose(test.windows[0], decimated[cut:cut + 120], atol=1e-6)
    assert train.start_s.max() + 0.01 <= test.start_s.min()  # no sample on both sides
    assert np.all(train.rpm == 1796) and np.all(test.load_hp == 0)
    # fault recordings never cross sides; only Normal's time split does
    shared = set(split.train.recording) & set(split.test.recording)
    assert shared == {"12k_DE_Normal_0"}


def test_hop_gives_overlapping_windows(cwru_root):
    split = load_cwru(cwru_root, "faults-3class", window_seconds=0.01, hop_seconds=0.005)
    # (1300 - 120) // 60 + 1 = 20 windows per recording, 6 recordings per class test side
    assert split.test.counts()["inner_race"] == 2 * 20
    first = split.test.subset(split.test.recording == "12k_DE_IR_007_3")
    np.testing.assert_array_equal(first.windows[0, 60:], first.windows[1, :60])


def test_missing_file_and_directory_are_named(cwru_root, tmp_path):
    (cwru_root / "12k_DE_B_021_2.mat").unlink()
    with pytest.raises(FileNotFoundError, match="12k_DE_B_021_2.mat"):
        load_cwru(cwru_root, "faults-3class")
    with pytest.raises(ValueError, match="SLEWGUARD_CWRU_DIR"):
        load_cwru(tmp_path / "nowhere")


def test_bad_protocol_and_sha256_mismatch(cwru_root):
    with pytest.raises(ValueError, match="paper-4class"):
        load_cwru(cwru_root, "all-10class")
    manifest = (cwru_root / "MANIFEST.tsv").read_text()
    (cwru_root / "MANIFEST.tsv").write_text(manifest.replace("\t105\t", "\t105\tdeadbeef"))
    load_cwru(cwru_root, "faults-3class", window_seconds=0.01)  # not verified by default
    with pytest.raises(ValueError, match="sha256"):
        load_cwru(cwru_root, "faults-3class", window_seconds=0.01, verify_sha256=True)


@pytest.mark.skipif(not (REAL_CWRU / "MANIFEST.tsv").is_file(),
                    reason=f"real CWRU data not found at {REAL_CWRU} (set SLEWGUARD_CWRU_DIR)")
def test_real_cwru_counts_and_rpm():
    split = load_cwru(REAL_CWRU, "paper-4class", window_seconds=1.0)
    faults = {"inner_race": 90, "outer_race": 90, "rolling_element": 90}
    assert split.train.counts() == {"healthy": 3, **faults}  # Normal: 60985 samples at 12 kHz
    assert split.test.counts() == {"healthy": 2, **{k: 30 for k in faults}}
    test_faults = split.test.subset(split.test.labels != "healthy")
    assert sorted(set(test_faults.rpm)) == [1721, 1722, 1723, 1724, 1725, 1728, 1729]
    assert set(split.train.rpm) >= {1797, 1772, 1748}
    assert len(set(split.train.recording)) == 28 and len(set(split.test.recording)) == 10


# Small and fast: 10 s windows at 2 kHz, 6-12 rpm (BSF lines need >= 3 impacts per window).
SMALL = {"windows_per_class": 4, "window_seconds": 10.0, "sample_rate_hz": 2000.0,
         "rpm_min": 6.0, "rpm_max": 12.0}


def assert_same_windowset(a: datasets.WindowSet, b: datasets.WindowSet) -> None:
    assert a.windows.dtype == b.windows.dtype == np.float32
    np.testing.assert_array_equal(a.windows, b.windows)
    for name in datasets.PER_WINDOW:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.rpm_trace is None) == (b.rpm_trace is None)
    if a.rpm_trace is not None:
        np.testing.assert_array_equal(a.rpm_trace, b.rpm_trace)
    assert a.meta.keys() == b.meta.keys()
    for key in a.meta:
        np.testing.assert_array_equal(a.meta[key], b.meta[key])
    assert (a.sample_rate_hz, a.bearing) == (b.sample_rate_hz, b.bearing)


@pytest.fixture(scope="module")
def small_split():
    return simulate_dataset(SimulatedDatasetSpec(**SMALL, seed=3), progress=False)


def test_simulated_set_is_reproducible_and_seeds_disjoint(small_split):
    again = simulate_dataset(SimulatedDatasetSpec(**SMALL, seed=3), progress=False)
    assert_same_windowset(small_split.train, again.train)
    assert_same_windowset(small_split.test, again.test)
    other = simulate_dataset(SimulatedDatasetSpec(**SMALL, seed=4), progress=False)
    assert not np.array_equal(small_split.train.windows, other.train.windows)
    train, test = small_split.train, small_split.test
    assert not set(train.meta["seed"]) & set(test.meta["seed"])
    assert not set(train.recording) & set(test.recording)
    assert train.counts() == {c: 3 for c in SimulatedDatasetSpec().classes}
    assert test.counts() == {c: 1 for c in SimulatedDatasetSpec().classes}
    assert train.windows.shape == (12, 20000) and train.windows.dtype == np.float32
    assert np.all((train.rpm > 6.0 * 0.99) & (train.rpm < 12.0 * 1.01))
    assert train.rpm_trace is not None and train.rpm_trace.shape == train.windows.shape


def test_simulated_mixed_bearings_and_one_profile():
    spec = SimulatedDatasetSpec(**{**SMALL, "windows_per_class": 6}, classes=("outer_race",),
                                bearings=("slew-4pc-1000", "slew-xr-1000"),
                                speed_profiles=("constant",), snr_db_min=5, snr_db_max=5)
    split = simulate_dataset(spec, progress=False)
    assert split.train.bearing == "mixed" and split.train.rpm_trace is None
    assert set(split.train.bearings()) | set(split.test.bearings()) <= set(spec.bearings)
    assert len(set(split.train.bearings())) == 2  # 5 draws from 2 presets (seeded, fixed)
    np.testing.assert_array_equal(split.train.meta["snr_db"], 5.0)


@pytest.mark.parametrize("bad, match", [
    ({"rpm_min": 5, "rpm_max": 2}, "rpm_min"),
    ({"classes": ("healthy", "spalled")}, "classes"),
    ({"bearings": ("no-such-bearing",)}, "bearings"),
    ({"classes": ("cage",), "window_seconds": 10}, "cage"),  # < 3 cage turns at 1 rpm
    ({"windows_per_clas": 3}, "windows_per_clas"),
])
def test_simulated_spec_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        SimulatedDatasetSpec(**bad)


def test_write_read_round_trip_is_identical(small_split, cwru_root, tmp_path):
    cwru = load_cwru(cwru_root, "paper-4class", window_seconds=0.01)
    for split, where in ((small_split, tmp_path / "sim"), (cwru, tmp_path / "cwru")):
        write(split, where)
        back = read(where)
        assert_same_windowset(split.train, back.train)
        assert_same_windowset(split.test, back.test)
        assert (back.name, back.note) == (split.name, split.note)
        assert back.provenance == json.loads(json.dumps(split.provenance))
    write(small_split, tmp_path / "sim")  # rewriting a data set in place is allowed
    assert read(tmp_path / "sim").provenance["spec"]["seed"] == 3


def test_reader_rejects_bad_version_corruption_and_strangers(small_split, tmp_path):
    write(small_split, tmp_path / "sim")
    manifest = json.loads((tmp_path / "sim" / "manifest.json").read_text())
    (tmp_path / "sim" / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ValueError, match="version 99.*regenerate"):
        read(tmp_path / "sim")
    write(small_split, tmp_path / "sim")
    with (tmp_path / "sim" / "test.npz").open("r+b") as fh:
        fh.seek(-200, 2)
        fh.write(b"\0" * 8)
    with pytest.raises(ValueError, match="sha256"):
        read(tmp_path / "sim")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        write(small_split, tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        read(tmp_path / "other")


def test_to_texts_equals_per_window_extraction():
    textify = pytest.importorskip("slewguard.signal.textify", reason="textify.py not written yet")
    from slewguard.signal.features import extract
    from slewguard.signal.kinematics import preset

    spec = SimulatedDatasetSpec(**{**SMALL, "windows_per_class": 3}, seed=5,
                                bearings=("slew-4pc-1000", "slew-xr-1000"))
    ws = simulate_dataset(spec, progress=False).train  # mixed bearings, with rpm traces
    texts = datasets.to_texts(ws, progress=False)
    assert len(texts) == len(ws) and len(set(texts)) > 1
    vocabulary = set(textify.vocabulary())
    for i, text in enumerate(texts):  # each text is its own window's, as the daemon would see it
        table = extract(ws.windows[i], ws.sample_rate_hz, preset(ws.bearings()[i]),
                        rpm=ws.rpm[i:i + 1], rpm_trace=ws.rpm_trace[i:i + 1])
        assert text == textify.textify_table(table)[0]
        assert set(text.split()) <= vocabulary
