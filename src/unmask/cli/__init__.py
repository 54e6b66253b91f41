"""The ``unmask`` command line.

Each module of this package (not starting with ``_``) is one sub-command and defines::

    COMMAND = "name"              # the sub-command
    HELP = "one line"             # shown by `unmask --help`
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # the exit code

Building the parser imports no heavy module (torch, numpy, matplotlib): ``unmask --help``,
``--version`` and argument errors answer at once; each ``run`` imports what it needs.

A sub-command reports bad input by raising ValueError, TypeError or FileNotFoundError with a
message that names the argument; :func:`main` prints it as one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["main", "build_parser"]


def _commands() -> list:
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            mods.append(importlib.import_module(f"{__name__}.{info.name}"))
    return sorted(mods, key=lambda m: m.COMMAND)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit code 2
        self.exit(2, f"unmask: error: {message}\n")


class _Formatter(argparse.HelpFormatter):
    """Fills in the registry names of a help text when it is printed (not when it is built)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        from ._common import REMOVAL_NAMES

        text = super()._get_help_string(action)
        if text and REMOVAL_NAMES in text:
            from ..removal import removal_names

            text = text.replace(REMOVAL_NAMES, ", ".join(removal_names()))
        return text


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="unmask",
        description="Explain image classifiers by removing what they "
        "see, and measure whether the explanations are true.",
    )
    parser.add_argument("--version", action="version", version=f"unmask {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for mod in _commands():
        p = sub.add_parser(
            mod.COMMAND, help=mod.HELP, description=mod.HELP, formatter_class=_Formatter
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"unmask: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unmask: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal failure: one line, the traceback on request
        if os.environ.get("UNMASK_DEBUG"):
            raise
        print(
            f"unmask: internal error: {type(exc).__name__}: {exc} "
            "(set UNMASK_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
