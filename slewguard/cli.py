"""The ``slewguard`` command line: one entry point, one subcommand per job.

Each part of the package registers its own subcommands (``register(subparsers)``) and imports
heavy dependencies (torch, transformers) only when its command runs: `slewguard --help` is fast.
A command that needs an optional extra the install lacks (training: torch, transformers; plots:
matplotlib; ...) stops with one line naming the extra (``slewguard.extras``).

Example:
    $ slewguard --help
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from slewguard import __version__
from slewguard.extras import MissingExtraError, extra_for, message

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "slewguard.demo",
    "slewguard.signal.cli",
    "slewguard.models.cli",
    "slewguard.models.prune.cli",
    "slewguard.models.build_cli",
    "slewguard.service.cli",
)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` adds "(default: X)" to options that have a default worth showing (not None,
    not an empty list, not a flag that is off).

    Example:
        >>> parser = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
        >>> _ = parser.add_argument("--epochs", type=int, default=3, help="passes")
        >>> _ = parser.add_argument("--out", help="directory")
        >>> "passes (default: 3)" in parser.format_help(), "(default: None)" in parser.format_help()
        (True, False)
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default == [] or action.required:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand.

    Example:
        >>> "demo" in build_parser().format_help()
        True
    """
    parser = argparse.ArgumentParser(
        prog="slewguard",
        description="Slewing-bearing fault diagnosis with a pruned language model.",
    )
    parser.add_argument("--version", action="version", version=f"slewguard {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not a part that is not built yet
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "serve" or not sys.stderr.isatty():
        # no redrawn bars in a service log or a file: transformers' "Loading weights" and the
        # hub's bars read the first when they are imported (later than here); tqdm itself (the
        # GGUF conversion's bar) reads TQDM_* as defaults of every bar it makes
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad input: a clear message, no traceback
        print(f"slewguard {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MissingExtraError as exc:  # checked before the command's work
        print(exc, file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an import of an optional extra, deeper down
        extra = extra_for(exc.name)
        if extra is None:
            raise
        print(message(command_name(args), extra), file=sys.stderr)
        return 2


def command_name(args: argparse.Namespace) -> str:
    """``train``, or ``dataset plot`` for a command with subcommands.

    Example:
        >>> command_name(argparse.Namespace(command="dataset", dataset_command="plot"))
        'dataset plot'
    """
    sub = getattr(args, f"{args.command.replace('-', '_')}_command", None)
    return f"{args.command} {sub}" if sub else args.command


if __name__ == "__main__":
    sys.exit(main())
