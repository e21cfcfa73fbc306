"""The ``gradientflow`` command line.

Each subcommand lives in ``gradientflow/commands/<name>.py`` and exposes
``register(subparsers)``; this file only collects them. Commands import their heavy
dependencies inside their run function, so ``gradientflow --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gradientflow import __version__
from gradientflow.errors import GradientFlowError

COMMANDS = ("diagnose", "show", "report", "lab")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradientflow",
        description="Find, explain and fix vanishing and exploding gradients in PyTorch models.",
    )
    parser.add_argument("--version", action="version", version=f"gradientflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"gradientflow.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gradientflow.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GradientFlowError as exc:
        print(f"gradientflow: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("gradientflow: interrupted", file=sys.stderr)
        return 130
