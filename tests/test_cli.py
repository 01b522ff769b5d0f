import argparse
import os
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


def test_no_progress_bar_when_stderr_is_not_a_terminal():
    # a bar made after the command started (as transformers' GGUF conversion makes one) draws
    # nothing into a log file; on a terminal it would
    code = ("import os, sys; from slewguard import cli\n"
            "cli.main(['bearings'])\n"
            "from tqdm.auto import tqdm\n"
            "for _ in tqdm(range(3), desc='converting'): pass\n"
            "print(os.environ['TQDM_DISABLE'], os.environ['HF_HUB_DISABLE_PROGRESS_BARS'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TQDM_", "HF_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "converting" not in out.stderr, out.stderr
    assert out.stdout.splitlines()[-1] == "1 1"
