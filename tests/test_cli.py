import subprocess
import sys

from slewguard.cli import build_parser


def test_help_lists_subcommands_with_descriptions():
    text = build_parser().format_help()
    assert "COMMAND" in text


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "slewguard.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.startswith("slewguard ")
