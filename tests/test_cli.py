import argparse
import re
import subprocess
import sys

from slewguard.cli import build_parser

# Every subcommand --help lists; a part whose module fails to import drops out of the list.
COMMANDS = ("demo", "dataset", "bearings", "train", "predict", "export", "prune", "sia",
            "build-default-model", "serve", "check-config", "baseline", "simulate")


def test_help_lists_subcommands_with_descriptions():
    parser = build_parser()
    sub, = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert tuple(sub.choices) == COMMANDS
    helps = {a.dest: a.help for a in sub._choices_actions}  # add_parser(help=...) only
    assert tuple(helps) == COMMANDS, "a subcommand without help= is missing from --help"
    text = parser.format_help()
    for name, line in helps.items():
        assert line and line.strip(), f"subcommand {name} has no one-line help"
        # argparse wraps a long line; the name is followed by its help, word for word
        words = r"\s+".join(map(re.escape, line.split()))
        assert re.search(rf"^\s+{re.escape(name)}\s+{words}\s*$", text, re.M), (name, text)


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "slewguard.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.startswith("slewguard ")
