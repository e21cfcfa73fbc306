"""What several commands share: loading a recipe (or the demo) and checking an output folder."""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradientflow.errors import GradientFlowError

if TYPE_CHECKING:
    from gradientflow.recipe import Recipe


def writable_folder(path: Path, what: str) -> Path:
    """Make the folder ``path`` and check a file can be written in it; ``what`` names the
    argument in the error (``"--out runs/a"``).

    Raises a one-line :class:`GradientFlowError` for a path under a regular file, a read-only
    filesystem or a folder without write permission, before any training starts.
    """
    for above in (path, *path.parents):
        if above.exists() and not above.is_dir():
            raise GradientFlowError(f"{what}: {above} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".gradientflow-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        raise GradientFlowError(f"{what}: cannot write in {path} ({reason})") from None
    return path


def load(spec: str | None, steps: int) -> tuple[Recipe, str]:
    """The recipe named by ``spec`` (``None``: the demo, sized for ``steps``) and its source."""
    from gradientflow.recipe import check_recipe, load_recipe

    if spec is None:
        from gradientflow.demo import demo_recipe

        epochs = steps // 21 + 1  # digits: 22 batches of 64 an epoch
        return check_recipe(demo_recipe(epochs=epochs), "demo"), "demo"
    return load_recipe(spec), spec


def add_command(sub: Any, name: str, help: str, doc: str | None, epilog: str) -> Any:
    """A subcommand's parser: its one-line help, the first paragraph of its module docstring as
    the description, and its examples as the epilog (kept as written)."""
    return sub.add_parser(
        name,
        help=help,
        description=doc.split("\n\n")[0] if doc else None,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_recipe_argument(p: argparse.ArgumentParser) -> None:
    """The optional ``FILE.py:FUNC`` positional argument (default: the built-in demo)."""
    p.add_argument(
        "recipe",
        nargs="?",
        default=None,
        help="FILE.py:FUNC returning a recipe dict (default: the built-in demo)",
    )


def plots_note() -> None:
    """A note on stderr when a report was written without its plots (no matplotlib)."""
    import sys

    from gradientflow.report.plots import _mpl

    if not _mpl.available():
        print(f"gradientflow: note: the report has no plots: {_mpl.NO_MATPLOTLIB}", file=sys.stderr)


def add_skip_damaged(p: argparse.ArgumentParser) -> None:
    """``--skip-damaged``: load what is readable of a run with malformed chunks."""
    p.add_argument(
        "--skip-damaged",
        action="store_true",
        help="read the rest of a run whose saved chunks are damaged (each lost one is reported) "
        "instead of refusing it",
    )
