import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from slewguard.cli import build_parser
from slewguard.models import cli as models_cli


def test_train_and_predict_are_registered_with_one_line_help():
    text = build_parser().format_help()
    assert "train" in text and "predict" in text
    args = build_parser().parse_args(["train", "--data", "a", "--data", "b", "--out", "m",
                                      "--family", "tiny-gpt2"])
    assert [str(p) for p in args.data] == ["a", "b"] and args.family == "tiny-gpt2"
    assert "--data a --data b" in models_cli.command_line(args)


def test_train_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for option, default in models_cli.TRAIN_DEFAULTS.items():
        assert f"(default: {default})" in text, option
    assert "backbone (default: minilm)" in text and "(default: None)" not in text
    assert "--no-trim-vocab" in text


def test_sizes_parse_and_bad_ones_say_how():
    assert models_cli.parse_sizes(["n_layer=3", "n_embd=64"]) == {"n_layer": 3, "n_embd": 64}
    with pytest.raises(ValueError, match="--size 'n_layer' is not KEY=INT"):
        models_cli.parse_sizes(["n_layer"])


def test_family_choices_read_from_the_family_files_are_the_registry_backbones():
    # The CLI reads the family files' source (family_names), backbones reads the registry.
    import slewguard.models.families as package
    from slewguard.models import backbones, family_names
    from slewguard.models.families import FAMILIES

    assert models_cli.FAMILY_CHOICES == backbones.SUPPORTED_FAMILIES
    shipped = ("minilm", "bert", "llama", "smollm2", "gpt2", "qwen2",
               "tiny-bert", "tiny-gpt2", "tiny-llama", "tiny-qwen2")
    assert [name for name in models_cli.FAMILY_CHOICES if name in shipped] == list(shipped)
    for model_type, family in FAMILIES.items():
        source = Path(package.__path__[0]) / f"{model_type}.py"
        assert family_names.read_family(source) == (model_type, family.backbones,
                                                     family.pretrained is not None)


def test_a_family_file_must_write_its_names_out(tmp_path):
    from slewguard.models import family_names

    helper = tmp_path / "helper.py"
    helper.write_text("LAYOUT = dict(layers='model.layers')\n")
    assert family_names.read_family(helper) is None  # no Family(...): not a family
    computed = tmp_path / "computed.py"
    computed.write_text("NAMES = ('x',)\nregister(Family(model_type='x', backbones=NAMES))\n")
    with pytest.raises(ValueError, match="computed.py: write model_type=.* as literals"):
        family_names.read_family(computed)


def test_the_cli_parser_builds_without_torch():
    # Why FAMILY_CHOICES is read from source: the registry would import torch on every --help.
    code = ("import sys; from slewguard.cli import build_parser; build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_train_refuses_a_missing_data_set(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "slewguard.cli", "train", "--data", str(tmp_path / "none"),
         "--family", "tiny-bert", "--out", str(tmp_path / "model")],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "manifest.json" in out.stderr


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    pytest.importorskip("slewguard.signal.textify",
                        reason="slewguard.signal.textify not written yet: no texts to train on")
    from slewguard.signal import datasets

    spec = datasets.SimulatedDatasetSpec(
        classes=("healthy", "outer_race"), windows_per_class=4, window_seconds=10.0,
        rpm_min=6.0, rpm_max=12.0, sample_rate_hz=2000.0)
    path = tmp_path_factory.mktemp("data") / "sim"
    datasets.write(datasets.simulate_dataset(spec, progress=False), path)
    return path


def test_train_then_predict_from_the_command_line(dataset_dir, tmp_path):
    model = tmp_path / "model"
    train = [sys.executable, "-m", "slewguard.cli", "train", "--data", str(dataset_dir),
             "--data", str(dataset_dir), "--family", "tiny-bert", "--size", "num_hidden_layers=3",
             "--epochs", "2",
             "--batch-size", "4", "--lr", "1e-3", "--features", "stft", "--out", str(model)]
    out = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    # stderr is a pipe here: one plain line per epoch, no progress bar redraws
    epochs = [line for line in out.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"], out.stderr
    assert all("test accuracy" in line and "train loss" in line for line in epochs)
    assert "train tiny-bert" not in out.stderr and "\x1b[" not in out.stderr  # no bar, no ANSI
    card = json.loads((model / "card.json").read_text())
    assert card["classes"] == ["healthy", "outer_race"]
    assert [d["n_train"] for d in card["data"]] == [6, 6]
    assert card["command"].startswith("slewguard train --data ")
    assert len(card["metrics"]["history"]) == 2
    assert card["training"]["trim_vocabulary"]  # on by default (the card stores it as 1)
    assert json.loads((model / "config.json").read_text())["num_hidden_layers"] == 3
    assert "--size num_hidden_layers=3" in card["command"]
    assert card["features"] == "stft" and "--features stft" in card["command"]
    assert (model / "training.png").stat().st_size > 1000
    predict = [sys.executable, "-m", "slewguard.cli", "predict", str(model), "--data",
               str(dataset_dir), "--plot", str(tmp_path / "confusion.png")]
    out = subprocess.run(predict, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"test accuracy {card['metrics']['accuracy']['test']:.2%}" in out.stdout
    assert (tmp_path / "confusion.png").is_file()
    assert f"written to {tmp_path / 'confusion.png'}" in " ".join(out.stdout.split())
    # and the daemon's envelope-spectrum picture of one window per class, with the verdicts
    spectra = tmp_path / "confusion_spectra.png"
    assert f"envelope spectra written to {spectra}" in " ".join(out.stdout.split())
    pixels = matplotlib.image.imread(spectra)
    assert pixels.shape[0] > 400 and pixels.std() > 0.05  # two panels, not a blank canvas
