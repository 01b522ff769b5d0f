"""A base install (torch, transformers, matplotlib unimportable): the serving commands run, and
every command that needs an extra stops with one line naming it, not with a traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from slewguard import cli, extras
from tests.models.no_torch import blocked_env

ROOT = Path(__file__).resolve().parents[1]
BASE = ("torch", "transformers", "peft", "matplotlib")  # what a base install lacks
SHIPPED = str(ROOT / "slewguard" / "models" / "default")
NEEDS = [  # command line, the extra its one line names
    (["train", "--data", "nowhere", "--out", "out/m"], "train", "training"),
    (["prune", "nowhere", "--data", "nowhere", "--target-ratio", "2", "--out", "out/p"],
     "prune", "training"),
    (["sia", "tiny-bert"], "sia", "training"),
    (["export", "nowhere"], "export", "training"),
    (["build-default-model", "--quick", "--out", "out/q"], "build-default-model", "training"),
    (["predict", SHIPPED, "--data", "nowhere", "--runtime", "torch"],
     "predict (torch runtime)", "training"),
    (["predict", SHIPPED, "--data", "nowhere", "--plot", "out/c.png"], "predict --plot",
     "plots"),
    (["dataset", "plot", "nowhere", "--out", "out/d.png"], "dataset plot", "plots"),
    (["demo", "--signal-only"], "demo", "demo"),
]


def slewguard(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slewguard.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def base_env(tmp_path_factory) -> dict:
    return blocked_env(tmp_path_factory.mktemp("base"), BASE)


@pytest.mark.parametrize("argv, command, extra", NEEDS, ids=[n[1] for n in NEEDS])
def test_a_command_that_needs_an_extra_says_so_in_one_line(argv, command, extra, base_env,
                                                           tmp_path):
    out = slewguard(argv, base_env, tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == (f"slewguard {command} needs the {extra} extra: "
                                  f"pip install 'slewguard[{extra}]'")
    assert not list(tmp_path.iterdir())  # stopped before writing anything


def test_the_serving_commands_run_on_a_base_install(base_env, tmp_path):
    helped = slewguard(["--help"], base_env, tmp_path)
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stderr[-2000:]
    for argv in (["serve", "--help"], ["bearings"], ["simulate", "--sensors", "2"],
                 ["check-config", str(ROOT / "deploy" / "slewguard.example.yaml")]):
        out = slewguard(argv, base_env, tmp_path)
        assert out.returncode == 0, (argv, out.stderr[-2000:])
        assert "Traceback" not in out.stderr, argv


def test_a_deep_import_of_an_extra_is_one_line_too(monkeypatch, capsys):
    def needs_peft(args):
        raise ModuleNotFoundError("No module named 'peft'", name="peft")

    def parser():
        top = argparse.ArgumentParser(prog="slewguard")
        top.add_argument("-v", "--verbose", action="store_true")
        sub = top.add_subparsers(dest="command", required=True)
        sub.add_parser("recover").set_defaults(func=needs_peft)
        return top

    monkeypatch.setattr(cli, "build_parser", parser)
    assert cli.main(["recover"]) == 2
    assert capsys.readouterr().err.strip() == (
        "slewguard recover needs the training extra: pip install 'slewguard[training]'")


def test_a_missing_base_dependency_still_raises(monkeypatch):
    def needs_numpy(args):
        raise ModuleNotFoundError("No module named 'numpy'", name="numpy")

    def parser():
        top = argparse.ArgumentParser(prog="slewguard")
        top.add_argument("-v", "--verbose", action="store_true")
        top.add_subparsers(dest="command").add_parser("x").set_defaults(func=needs_numpy)
        return top

    monkeypatch.setattr(cli, "build_parser", parser)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["x"])


def test_every_extra_named_exists_in_pyproject_and_setup_installs_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    named = set(extras.EXTRA_OF_MODULE.values()) | {extras.INSTALL_EXTRA.get(e, e)
                                                    for e in extras.MODULES_OF_EXTRA}
    assert named <= set(optional)
    assert {"llm", "demo", "baselines", "dev", "docs", "training", "plots"} <= set(optional)
    base = " ".join(project["dependencies"])
    for heavy in ("torch", "transformers", "peft", "safetensors", "matplotlib", "onnxscript"):
        assert heavy not in base, heavy
    assert "torch==2.13.0" in optional["training"]  # pinned: the CPU build from local disk
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    default = setup.split('extras="${1:-', 1)[1].split("}", 1)[0].split(",")
    assert set(optional) <= set(default), set(optional) - set(default)
