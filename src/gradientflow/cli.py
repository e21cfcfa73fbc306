"""The ``gradientflow`` command line: parse the arguments and dispatch to a command.

Each subcommand lives in ``gradientflow/commands/<name>.py`` and exposes
``register(subparsers)``. Commands import their heavy dependencies inside their run function,
so ``gradientflow --help`` is fast. Errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from gradientflow import __version__
from gradientflow.errors import GradientFlowError, GradientFlowWarning

COMMANDS = ("diagnose", "show", "report", "trial", "preflight", "lab")
EPILOG = """examples:
  gradientflow diagnose                      # the demo: a 20-layer sigmoid MLP on digits
  gradientflow diagnose train.py:recipe --out runs/a
  gradientflow show runs/a
  gradientflow report runs/a                 # runs/a/report.html
  gradientflow trial train.py:recipe --remedies add_batchnorm
  gradientflow lab --quick

`gradientflow COMMAND --help` shows each command's options and examples.
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="gradientflow",
        description="Find, explain and fix vanishing and exploding gradients in PyTorch models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gradientflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"gradientflow.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input, one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except GradientFlowError as exc:
        return _fail(str(exc))
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as exc:  # a write the commands did not foresee: still one line
        where = f" {exc.filename}" if exc.filename else ""
        return _fail(f"cannot write or read{where}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        print("gradientflow: interrupted", file=sys.stderr)
        return 130


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """gradientflow's own warnings as one line (``gradientflow: warning: ...``), without the
    source line Python prints; other warnings as Python prints them."""
    if issubclass(category, GradientFlowWarning):
        from gradientflow._format import printable

        one_line = "; ".join(x.strip() for x in str(message).splitlines() if x.strip())
        print(f"gradientflow: warning: {printable(one_line)}", file=file or sys.stderr)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


_PYTHON_SHOWWARNING = warnings.showwarning


def _fail(message: str) -> int:
    from gradientflow._format import printable

    one_line = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"gradientflow: error: {printable(one_line)}", file=sys.stderr)
    return 2
