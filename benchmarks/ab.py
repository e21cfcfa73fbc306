"""Old code against new code, side by side: the cost of watching under two versions, one run.

On a shared CPU a plain step's time drifts by 20-40% within minutes, so ratios measured in two
runs (before a change, after it) do not compare. Here two worker processes take turns in one
run: one imports the gradientflow of ``--base`` (a git revision, extracted with ``git
archive``, or a folder holding a ``gradientflow`` package), the other this checkout's (or
``--head``'s). Each round, each worker times its plain
copy of the model and its watched copy (same weights, same batch, ``benchmarks/_harness.py``),
alternating which goes first, and reports watched / plain for the round. The table gives, per
version, the median of those ratios over rounds, and the median over rounds of new / old.
``--base HEAD`` (the same code twice) measures the noise floor (an A/A run).

Usage::

    python benchmarks/ab.py --base c0052bc --models deep2000 --schedules default
    python benchmarks/ab.py --base HEAD --models mlp16x512 --rounds 5 --steps 20   # A/A
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
SCHEDULES = ("default", "everything")


# ---------------------------------------------------------------------------------- worker
def _worker(args: argparse.Namespace) -> None:
    """Serve rounds on stdin: ``round plain-first|watched-first`` -> a JSON line of times."""
    sys.path.insert(0, args.src)  # this version of gradientflow, before any other
    sys.path.insert(1, str(ROOT))  # benchmarks._harness: the same models and step for both
    import torch
    from benchmarks._harness import CASES, Participant

    import gradientflow

    torch.set_num_threads(args.threads)
    plain = Participant("plain", CASES[args.model], torch.device("cpu"))
    watched = plain.twin("watched")
    schedule = gradientflow.Schedule.everything() if args.schedule == "everything" else None
    mon = gradientflow.watch(watched.model, watched.opt, schedule=schedule)
    watched.hook = lambda step, loss: mon.log(loss=loss)
    plain.run(args.warmup)
    watched.run(args.warmup)
    _send(sys.stdout, {"ready": str(Path(gradientflow.__file__).parent)})
    for line in sys.stdin:
        command = line.split()
        if command[:1] != ["round"]:
            break
        order = (plain, watched) if command[1] == "plain-first" else (watched, plain)
        times = {p.name: p.run(args.steps) for p in order}
        _send(sys.stdout, times)
    mon.close()


def _send(out: IO[str], message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


# ---------------------------------------------------------------------------------- parent
def extract(rev: str, into: Path) -> Path:
    """The ``src`` folder of git revision ``rev`` of this repository, written under ``into``;
    ``rev`` a folder holding a ``gradientflow`` package: that folder."""
    if (Path(rev) / "gradientflow" / "__init__.py").is_file():
        return Path(rev).resolve()
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "src.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


class Worker:
    """A worker process timing one model and schedule with one version's gradientflow."""

    def __init__(self, src: Path, model: str, schedule: str, args: argparse.Namespace) -> None:
        cmd = [sys.executable, __file__, "--worker", "--src", str(src), "--model", model]
        cmd += ["--schedule", schedule, "--steps", str(args.steps)]
        cmd += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH="")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.package = self._receive()["ready"]

    def round(self, plain_first: bool) -> float:
        """One round; watched seconds per step / plain seconds per step."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("round " + ("plain-first" if plain_first else "watched-first") + "\n")
        self.proc.stdin.flush()
        times = self._receive()
        return float(times["watched"] / times["plain"])

    def _receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"ab.py: a worker exited (status {self.proc.returncode})")
        return dict(json.loads(line))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def summary(old: list[float], new: list[float]) -> dict[str, float]:
    """Medians over rounds of each version's ratio to plain, and of new / old per round.

    >>> round(summary([1.2, 1.4, 1.3], [1.1, 1.05, 1.3])["new_over_old"], 4)  # of 0.917, 0.75, 1
    0.9167
    """
    per_round = [n / o for o, n in zip(old, new, strict=True)]
    return {
        "old": statistics.median(old),
        "new": statistics.median(new),
        "new_over_old": statistics.median(per_round),
        "new_over_old_min": min(per_round),
        "new_over_old_max": max(per_round),
    }


def compare(old_src: Path, new_src: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Per model and schedule: both versions' ratios over ``args.rounds`` alternating rounds."""
    results: dict[str, Any] = {}
    for model in args.models.split(","):
        for schedule in args.schedules.split(","):
            workers = [Worker(src, model, schedule, args) for src in (old_src, new_src)]
            ratios: list[list[float]] = [[], []]
            try:
                for r in range(args.rounds):
                    for k in (r % 2, 1 - r % 2):  # old first in even rounds, new first in odd
                        ratios[k].append(workers[k].round(plain_first=(r // 2) % 2 == 0))
            finally:
                for w in workers:
                    w.close()
            results[f"{model} {schedule}"] = {**summary(*ratios), "rounds": ratios}
            print(_row(f"{model} {schedule}", results[f"{model} {schedule}"]), flush=True)
    return results


def _row(name: str, s: dict[str, Any]) -> str:
    span = f"[{s['new_over_old_min']:.2f}-{s['new_over_old_max']:.2f}]"
    return f"{name:<28} {s['old']:>6.3f} {s['new']:>6.3f} {s['new_over_old']:>8.3f} {span}"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="old code: a git revision, or a src folder")
    ap.add_argument("--head", default="", help="new code, the same (default: ./src)")
    ap.add_argument("--models", default="mlp16x512,deep2000", help="comma list (_harness.CASES)")
    ap.add_argument("--schedules", default="default,everything", help="default,everything")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=50, help="steps per copy per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--src", default="", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="", help=argparse.SUPPRESS)
    ap.add_argument("--schedule", default="default", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for s in [] if args.worker else args.schedules.split(","):
        if s not in SCHEDULES:
            ap.error(f"--schedules: {s!r} is not one of {', '.join(SCHEDULES)}")
    if args.rounds < 2 or args.steps < 1:
        ap.error("--rounds must be >= 2 and --steps >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:
        _worker(args)
        return
    with tempfile.TemporaryDirectory(prefix="gradientflow-ab-") as tmp:
        old_src = extract(args.base, Path(tmp) / "old")
        new_src = extract(args.head, Path(tmp) / "new") if args.head else ROOT / "src"
        print(f"old: {args.base}  new: {args.head or 'this checkout'}  "
              f"{args.rounds} rounds x {args.steps} steps, {args.threads} thread(s)")  # fmt: skip
        print(f"{'model schedule':<28} {'old':>6} {'new':>6} {'new/old':>8} [range]")
        results = compare(old_src, new_src, args)
    if args.json is not None:
        args.json.write_text(json.dumps({"base": args.base, "results": results}, indent=1))


if __name__ == "__main__":
    main()
