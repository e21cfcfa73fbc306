"""``gradientflow lab``: reproduce the literature's results on data that ships with the package.

Writes results.json, summary.md and report.html to --out (default ./lab-results) and exits
with status 1 if any experiment misses its criterion.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """examples:
  gradientflow lab                       # the full lab (about half an hour a seed on 2 cores)
  gradientflow lab --quick               # every experiment, small budgets (about 2 minutes)
  gradientflow lab mean-field residual   # just these
  gradientflow lab --list                # what there is
"""


def register(subparsers: Any) -> None:
    """Add the ``lab`` subcommand."""
    p = subparsers.add_parser(
        "lab",
        help="reproduce the literature's results (vanishing gradients and their remedies)",
        description="Run the lab's experiments; each checks a claim against a stated criterion. "
        + (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="experiments to run (default: all)")
    p.add_argument("--quick", action="store_true", help="small budgets (≈ 2 min on 2 cores)")
    p.add_argument("--out", default="lab-results", help="output folder (default: lab-results)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default: 2)")
    p.add_argument("--seeds", type=int, default=1, help="run each with seeds 0..N-1 (default 1)")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen experiments, print the summary; 1 if a criterion was missed."""
    from gradientflow.commands._common import writable_folder
    from gradientflow.lab import experiments
    from gradientflow.lab.reporting import summary_table
    from gradientflow.lab.runner import check_lab_arguments, run_lab

    if args.list:
        for name in experiments.names():
            print(f"{name:18s} {experiments.describe(name)}")
        return 0
    check_lab_arguments(args.names or None, args.jobs, args.seeds)  # before making --out
    writable_folder(Path(args.out), f"--out {args.out}")
    results = run_lab(
        args.names or None,
        quick=args.quick,
        out_dir=args.out,
        jobs=args.jobs,
        progress=not args.no_progress,
        seeds=args.seeds,
    )
    print(summary_table(results))
    failed = [r.name for r in results if not r.passed]
    print(f"\nwrote {args.out}/results.json, summary.md, report.html")
    if failed:
        print(f"criteria missed: {', '.join(failed)}")
        return 1
    return 0
