"""On a CUDA device: watching costs no host synchronisation inside a step, and little time.

Two models trained with bf16 autocast (a 16x512 ReLU MLP, batch 4096; a 4-layer transformer
encoder, d_model 256, batch 64 x 256 tokens), SGD with momentum.

1. **Synchronisation check.** Every watched step runs under
   ``torch.cuda.set_sync_debug_mode("error")``: an operation that waits for the device (a
   ``.item()``, a ``.cpu()``, a data-dependent ``if``) raises. The monitor turns an error in its
   own code into a warning and stops recording, so both are caught; the first one found is the
   verdict. A second pass with mode ``"warn"`` then lists *every* synchronisation, by source
   line and by the steps where it happened, so that a flush at the flush boundary (every
   ``flush_every`` records) is told apart from a sync on every step.
2. **Overhead.** Plain vs ``watch(model, opt)`` vs ``Schedule.everything()``, rounds interleaved
   (``benchmarks/_harness.py``), the clock stopped after ``torch.cuda.synchronize()``.

Without CUDA it exits at once with a message saying so. Usage::

    python benchmarks/gpu.py [--steps 200] [--rounds 7] [--check-steps 120] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import linecache
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import Case, Encoder, Participant, interleave, mlp, summarise

import gradientflow
from gradientflow import Schedule
from gradientflow.jsonsafe import json_safe

PACKAGE = str(Path(gradientflow.__file__).parent)
CASES = [
    Case("mlp16x512", mlp, (4096, 512), 512),
    Case("transformer", lambda: Encoder(d_model=256, heads=8, layers=4), (64, 256, 256), 10),
]
SCHEDULES: dict[str, Callable[[], Schedule | None]] = {
    "default": lambda: None,
    "everything": Schedule.everything,
}


def where(filename: str, lineno: int) -> str:
    """``file:line  source`` with the path shortened to the package or benchmarks folder."""
    source = linecache.getline(filename, lineno).strip()
    parts = Path(filename).parts
    for root in ("gradientflow", "benchmarks", "torch"):
        if root in parts:
            filename = "/".join(parts[len(parts) - 1 - parts[::-1].index(root) :])
            break
    return f"{filename}:{lineno}  {source}"


def error_pass(case: Case, schedule: Schedule | None, steps: int, device: str = "cuda") -> str:
    """Watched steps under sync mode "error"; 'ok' or where the first sync happened."""
    p = Participant("watched", case, torch.device(device))
    p.run(2)  # library warm-up (cuBLAS handles) unwatched
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gradientflow.watch(p.model, p.opt, schedule=schedule) as mon:
            p.hook = lambda step, loss: mon.log(loss=loss)
            for k in range(steps):
                try:
                    torch.cuda.set_sync_debug_mode("error")
                    p.run(1)
                except RuntimeError as exc:
                    frames = traceback.extract_tb(exc.__traceback__)
                    ours = [f for f in frames if f.filename.startswith(PACKAGE)] or frames
                    at = where(ours[-1].filename, ours[-1].lineno or 0)
                    return f"sync at step {k}: {exc} at {at}"
                finally:
                    torch.cuda.set_sync_debug_mode(0)
                stopped = [w for w in caught if "stopped recording" in str(w.message)]
                if stopped:
                    return f"sync at step {k} inside the monitor: {stopped[0].message}"
    return "ok"


def warn_pass(
    case: Case, schedule: Schedule | None, steps: int, device: str = "cuda"
) -> dict[str, list[int]]:
    """Every synchronisation of watched steps (mode "warn"): source line -> steps."""
    p = Participant("watched", case, torch.device(device))
    p.run(2)
    found: dict[str, list[int]] = {}
    with gradientflow.watch(p.model, p.opt, schedule=schedule) as mon:
        p.hook = lambda step, loss: mon.log(loss=loss)
        for k in range(steps):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    p.run(1)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            for w in caught:
                if "synchroniz" in str(w.message):
                    found.setdefault(where(w.filename, w.lineno), []).append(k)
    return found


def sync_report(case: Case, mode: str, steps: int) -> dict[str, Any]:
    verdict = error_pass(case, SCHEDULES[mode](), steps)
    syncs = warn_pass(case, SCHEDULES[mode](), steps) if verdict != "ok" else {}
    print(f"  {case.name:12} {mode:10} {steps} watched steps: {verdict}")
    for line, at in syncs.items():
        shown = ", ".join(map(str, at[:8])) + (", ..." if len(at) > 8 else "")
        print(f"      {len(at):4} x  {line}   (steps {shown})")
    return {"verdict": verdict, "syncs": syncs}


def overhead(case: Case, rounds: int, steps: int) -> dict[str, dict[str, float]]:
    plain = Participant("plain", case, torch.device("cuda"))
    crowd = [plain]
    for mode, schedule in SCHEDULES.items():
        p = plain.twin(f"gradientflow {mode}")
        stack = contextlib.ExitStack()
        mon = stack.enter_context(gradientflow.watch(p.model, p.opt, schedule=schedule()))
        p.hook = lambda step, loss, mon=mon: mon.log(loss=loss)
        p.close = stack.close
        crowd.append(p)
    for p in crowd:
        p.run(5)
    times = interleave(crowd, rounds, steps, sync=torch.cuda.synchronize)
    for p in crowd:
        if p.close is not None:
            p.close()
    return summarise(times)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--check-steps", type=int, default=120, help="steps of the sync check")
    ap.add_argument("--batch", type=int, default=0, help="override the batch sizes")
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if not torch.cuda.is_available():
        sys.exit(
            f"benchmarks/gpu.py needs a CUDA device; this torch ({torch.__version__}) sees none "
            "(torch.cuda.is_available() is False). Nothing was measured."
        )
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}, bf16 autocast")
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "sync": {}, "ratios": {}}
    print("host synchronisation inside watched steps:")
    cases = CASES
    if args.batch:
        cases = [
            dataclasses.replace(c, input_shape=(args.batch, *c.input_shape[1:])) for c in CASES
        ]
    for case in cases:
        for mode in SCHEDULES:
            out["sync"][f"{case.name}/{mode}"] = sync_report(case, mode, args.check_steps)
    print(f"overhead ({args.rounds} rounds x {args.steps} steps, interleaved):")
    print(f"  {'model':12} {'plain ms':>9} {'default':>20} {'everything':>20}")
    for case in cases:
        r = overhead(case, args.rounds, args.steps)
        out["ratios"][case.name] = r
        cells = [f"{r[f'gradientflow {m}']['median']:.3f} [{r[f'gradientflow {m}']['min']:.2f}-"
                 f"{r[f'gradientflow {m}']['max']:.2f}]" for m in SCHEDULES]  # fmt: skip
        print(f"  {case.name:12} {r['plain']['ms']:9.3f} {cells[0]:>20} {cells[1]:>20}")
    if args.json is not None:
        args.json.write_text(json.dumps(json_safe(out), indent=2))


if __name__ == "__main__":
    main()
