"""Every `slewguard ...` command in the README's operator section parses, and the cheap ones run."""

import re
import shlex
from pathlib import Path

import pytest

from slewguard.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# Config paths in the operator section point at /etc; the example config stands in for them.
STAND_INS = {"/etc/slewguard/slewguard.yaml": str(ROOT / "deploy" / "slewguard.example.yaml")}


def _operator_commands() -> list[str]:
    section = README.split("## Operating slewguard", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"(?:\.venv/bin/)?slewguard\s+[a-z][^`\n]*", section)
    commands = []
    for cmd in found:
        if cmd.strip().endswith("..."):  # prose shorthand ("slewguard train ..."), not a command
            continue
        cmd = cmd.replace(".venv/bin/", "").strip().rstrip(".")
        if cmd.split()[1] in {"check-config", "bearings", "simulate", "predict", "train", "prune",
                              "build-default-model", "serve"}:
            commands.append(cmd)
    return sorted(set(commands))


COMMANDS = _operator_commands()


def test_operator_section_names_the_commands_an_operator_needs():
    verbs = {c.split()[1] for c in COMMANDS}
    assert {"check-config", "bearings", "simulate", "predict", "build-default-model"} <= verbs


@pytest.mark.parametrize("command", COMMANDS)
def test_operator_command_parses(command):
    argv = [STAND_INS.get(a, a) for a in shlex.split(command)[1:]]
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[1] in
                                     {"check-config", "bearings"}])
def test_cheap_operator_commands_run(command, capsys):
    argv = [STAND_INS.get(a, a) for a in shlex.split(command)[1:]]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip()
