"""``python -m benchmarks.zoo [train|score|all] [--cache D] [--out F] [--only N ..] [--seed S]``

* ``train``: train the cases missing from the cache (``--retrain``: all of them again);
* ``score``: diagnose the cached traces, print the confusion table and write the results JSON;
* ``all`` (the default): both.

``--seed S`` trains every case with another seed, into its own cache and results file
(``.zoo-cache/seed-S``, ``results-seed-S.json``): the rules were adjusted while looking at the
seed-0 runs, so runs at other seeds are the held-out check that they were not fitted to them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.zoo import CASES
from benchmarks.zoo.report import table
from benchmarks.zoo.score import score_cache, totals
from benchmarks.zoo.train import is_trained, train_case

from gradientflow.jsonsafe import json_safe

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = HERE.parents[1] / ".zoo-cache"
DEFAULT_OUT = HERE / "results.json"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.zoo", description=__doc__.split("\n")[0])
    p.add_argument("step", nargs="?", default="all", choices=["train", "score", "all"])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="traces and labels")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    p.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    p.add_argument("--retrain", action="store_true", help="train cached cases again")
    p.add_argument("--seed", type=int, default=0, help="training seed (held-out runs: 1, 2)")
    args = p.parse_args(argv)
    if args.seed:
        if args.cache == DEFAULT_CACHE:
            args.cache = DEFAULT_CACHE / f"seed-{args.seed}"
        if args.out == DEFAULT_OUT:
            args.out = HERE / f"results-seed-{args.seed}.json"
    return args


def _train(names: list[str], cache: Path, retrain: bool, seed: int = 0) -> None:
    start = time.perf_counter()
    for case in CASES:
        if case.name not in names or (is_trained(case, cache) and not retrain):
            continue
        rec = train_case(case, cache, seed)
        status = "ok" if rec["verified"] else "UNVERIFIED"
        err = f" error {rec['error']}" if rec["error"] else ""
        print(f"  {case.name:44s} {rec['seconds']:6.1f}s {status}: {rec['check']}{err}")
        sys.stdout.flush()
    print(f"trained in {time.perf_counter() - start:.1f}s")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    names = [c.name for c in CASES]
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            print(f"unknown case(s): {unknown}; known: {names}", file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]
    if args.step in ("train", "all"):
        _train(names, args.cache, args.retrain, args.seed)
    if args.step in ("score", "all"):
        rows = score_cache(args.cache, names)
        summary = totals(rows)
        print(table(rows, summary))
        doc = {
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "totals": summary,
            "cases": rows,
        }
        args.out.write_text(json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n")
        print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
