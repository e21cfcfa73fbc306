"""What the gradient through time costs on a 2-layer LSTM, as ratios to a plain step.

The probe replays one full step in ``every`` (``RecurrentProbe(every=...)``, 1 by default;
``every=4`` is the cheaper option measured beside it).
Full steps are rare, so a median over short rounds would hide the replays: here every round
holds whole periods of the replay. Two groups, each interleaved and rotated as in
``benchmarks/peers.py`` (``_harness.interleave``), each ratio taken within a round:

* default schedule (a full step every 50th): rounds of 200 steps, so each holds exactly
  four replays (``every=1``: steps 0, 50, 100, ...) or one (``every=4``: 0, 200, ...);
* ``Schedule.everything()``: rounds of ``--steps`` (a multiple of 4) steps.

Usage::

    python benchmarks/recurrent_cost.py [--rounds 5] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import CASES, Participant, interleave, summarise

import gradientflow
from gradientflow import Schedule
from gradientflow.probes.recurrent import recurrent_probes

SPARSE = 4  # the cheaper sampling measured beside the default (every=1)
PERIOD = 50 * SPARSE  # steps between two every=4 replays under the default schedule


def watched(base: Participant, name: str, schedule: Schedule | None, every: int) -> Participant:
    """A twin of ``base`` watched with the recurrent probes replaying every ``every``-th full
    step (kept open until the process ends)."""
    p = base.twin(name)
    probes = recurrent_probes(p.model, every=every)
    stack = contextlib.ExitStack()
    mon = stack.enter_context(gradientflow.watch(p.model, p.opt, schedule=schedule, probes=probes))
    p.hook = lambda step, loss: mon.log(loss=loss)
    p.close = stack.close
    return p


def group(case: str, schedule: Schedule | None, rounds: int, steps: int) -> dict[str, float]:
    """Median ratio to plain of ``every=SPARSE`` and ``every=1`` under ``schedule``."""
    base = Participant("plain", CASES[case], torch.device("cpu"))
    crowd = [
        base,
        watched(base, f"every={SPARSE}", schedule, SPARSE),
        watched(base, "every=1", schedule, 1),
    ]
    for p in crowd:
        p.run(1)  # step 0: the first full step, replayed; lazy set-up
    result = summarise(interleave(crowd, rounds, steps))
    for p in crowd:
        if p.close is not None:
            p.close()
    return {name: r["median"] for name, r in result.items()} | {"plain_ms": result["plain"]["ms"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="lstm2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="steps a round under everything()")
    ap.add_argument("--period", type=int, default=PERIOD, help="steps a round by default")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.1f}")
    for label, schedule, steps in (
        ("default schedule", None, args.period),
        ("Schedule.everything()", Schedule.everything(), args.steps),
    ):
        r = group(args.case, schedule, args.rounds, steps)
        cells = "  ".join(f"{k} {v:.2f}x" for k, v in r.items() if k not in ("plain", "plain_ms"))
        print(
            f"{args.case} {label:22} ({args.rounds} rounds x {steps} steps, plain "
            f"{r['plain_ms']:.1f} ms/step): {cells}"
        )
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
