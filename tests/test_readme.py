"""The README stays short and true: its two commands are what CI runs, its minimal config is
valid, and every `slewguard ...` command in it and in the operator pages parses (cheap ones run)."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from slewguard.cli import build_parser, main
from slewguard.service.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Pages whose commands an operator copies; their config paths point at /etc or at the README's
# own slewguard.yaml, for which the example config stands in.
PAGES = ("README.md", "docs/index.md", "docs/install.md", "docs/operations.md", "docs/models.md")
EXAMPLE = str(ROOT / "deploy" / "slewguard.example.yaml")
STAND_INS = {"/etc/slewguard/slewguard.yaml": EXAMPLE, "slewguard.yaml": EXAMPLE}
VERBS = {"check-config", "bearings", "simulate", "predict", "train", "prune", "sia", "serve",
         "build-default-model", "demo", "dataset", "baseline", "export"}
_CMD = re.compile(r"^(?:\S*\.venv/bin/)?slewguard\s+([a-z].*)$")


def _commands(text: str) -> list[str]:
    """`slewguard VERB ...` from fenced blocks (one per line) and inline code spans (which may
    wrap lines), without shell comments or a trailing '&'; prose shorthand is left out."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    candidates = [line for b in blocks for line in b.splitlines()]
    candidates += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]
    found = []
    for line in candidates:
        line = re.sub(r"\s+#.*$", "", line).strip().removesuffix("&").strip()
        match = _CMD.match(line)
        if not match or any(s in line for s in ("...", "[", "<", "|")):
            continue
        if match.group(1).split()[0] in VERBS:
            found.append("slewguard " + " ".join(match.group(1).split()))
    return found


COMMANDS = sorted({c for page in PAGES for c in _commands((ROOT / page).read_text("utf-8"))})


def _argv(command: str) -> list[str]:
    return [STAND_INS.get(a, a) for a in shlex.split(command)[1:]]


def test_readme_is_short():
    assert len(README.splitlines()) <= 150


def test_readme_gives_the_two_commands_ci_runs():
    assert "bash scripts/demo.sh" in README and "bash scripts/test.sh" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^bash scripts/test\.sh\b", ci, flags=re.M)


def test_readme_minimal_config_is_valid_and_minimal():
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README, flags=re.S))
    assert 5 <= len(block.strip().splitlines()) <= 10
    cfg = config_from_dict(yaml.safe_load(block), env={})
    assert cfg.sensors[0].bearing.preset and cfg.mqtt.port == 1883


def test_readme_runs_serve_and_simulate_against_one_broker():
    serve = next(c for c in _commands(README) if c.split()[1] == "serve")
    sim = next(c for c in _commands(README) if c.split()[1] == "simulate")
    assert "--config slewguard.yaml" in serve
    assert "--publish" in sim and "--broker 127.0.0.1:1883" in sim
    assert "mosquitto -p 1883" in README


def test_operator_pages_name_the_commands_an_operator_needs():
    verbs = {c.split()[1] for c in COMMANDS}
    assert {"check-config", "bearings", "simulate", "serve", "baseline", "predict", "prune",
            "train", "build-default-model"} <= verbs


@pytest.mark.parametrize("command", COMMANDS)
def test_command_parses(command):
    args = build_parser().parse_args(_argv(command))
    assert args.command == command.split()[1]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[1] in
                                     {"check-config", "bearings"} and "FILE" not in c])
def test_cheap_command_runs(command, capsys):
    assert main(_argv(command)) == 0
    assert capsys.readouterr().out.strip()
