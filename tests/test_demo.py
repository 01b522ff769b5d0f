import matplotlib.image

from slewguard.cli import main
from slewguard.signal.simulate import FAULT_CLASSES
from slewguard.signal.textify import parse


def test_demo_writes_the_envelope_plot_and_prints_parseable_texts(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["demo", "--rpm", "12", "--window-seconds", "20", "--snr-db", "10", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    png = out / "envelope_spectra.png"
    assert png.exists() and png.stat().st_size > 20_000
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 400 and pixels.std() > 0.05  # not a blank canvas
    texts = {}
    for line in printed.splitlines():
        if line.startswith("text "):
            fault, text = line.removeprefix("text ").split(": ", 1)
            texts[fault] = parse(text)
    # 20 s at 12 rpm hold under 3 cage (FTF) periods: the demo says so instead of a text
    assert set(texts) == set(FAULT_CLASSES) - {"cage"} and "skip cage: " in printed
    assert texts["outer_race"]["env_bpfo_h1_db"] >= 5
    assert texts["inner_race"]["env_bpfi_h1_db"] >= 5
    assert texts["rolling_element"]["env_bsf2_h1_db"] >= 5
    assert texts["healthy"]["env_bpfo_h1_db"] < 5


def test_demo_reports_bad_settings_without_a_traceback(tmp_path, capsys):
    argv = ["demo", "--bearing", "no-such-bearing", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "no-such-bearing" in capsys.readouterr().err
