"""gradientflow beside its peers: per-step cost of each watcher as a ratio to plain training.

One run, same models, same steps: every watcher (see ``benchmarks/_peers.py``) trains its own
copy of the same model (same weights, same fixed batch, SGD with momentum), rounds interleaved
and rotated (see ``benchmarks/_harness.py``). The figure is the median over rounds of the
watcher's time per step divided by plain's in the same round, with its range over rounds.
``plain (A/A)`` is a second plain copy: its spread is the noise floor of the run.

A watcher whose warm-up step says it would take more than ``--budget-s`` seconds is skipped
and the table says so. ``--compile`` times ``torch.compile``-d models, plain vs watched, and
counts the graphs, compiled frames and graph breaks that watching adds. Usage::

    python benchmarks/peers.py                      # all models, 7 rounds x 50 steps
    python benchmarks/peers.py --quick              # MLP only, small batch: < 2 minutes
    python benchmarks/peers.py --models mlp16x512,lstm2 --rounds 7 --steps 50 --json out.json
    python benchmarks/peers.py --compile --models mlp16x512
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import CASES, Case, Participant, interleave, summarise

import gradientflow
from benchmarks import _peers
from gradientflow import Schedule
from gradientflow.jsonsafe import json_safe

MODELS = ["mlp16x512", "cnn_bn", "transformer", "lstm2", "deep2000"]


def _skip_reason(p: Participant, plain_s: float, steps: int, rounds: int, budget: float) -> str:
    """Why ``p`` is too slow to time (from one timed warm-up step), or ''."""
    per_step = p.run(1)
    if per_step * steps * rounds <= budget or p.name.startswith("plain"):
        return ""
    return (
        f"skipped: {per_step:.2f} s/step ({per_step / plain_s:.0f}x plain), "
        f"{steps}x{rounds} steps would exceed --budget-s {budget:g}"
    )


def measure(case: Case, names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Ratios to plain of every watcher in ``names`` on ``case`` (skipped ones say why)."""
    device = torch.device(args.device)
    base = Participant("plain", case, device)
    crowd = [base] + [base.twin(n) for n in names if n != "plain"]
    skipped: dict[str, str] = {}
    active: list[Participant] = []
    for p in crowd:
        reason = _peers.available(p.name)
        if reason:
            skipped[p.name] = f"skipped: {reason}"
            continue
        attach = _peers.WATCHERS[p.name]
        if attach is not None:
            attach(p)
        if args.compile:
            p.forward = torch.compile(p.model)
        p.run(args.warmup)  # first steps: lazy set-up, compilation
        active.append(p)
    plain_s = base.run(1)
    for p in list(active):
        reason = _skip_reason(p, plain_s, args.steps, args.rounds, args.budget_s)
        if reason:
            skipped[p.name] = reason
            active.remove(p)
            _close(p)
    times = interleave(active, args.rounds, args.steps)
    for p in active:
        _close(p)
    result: dict[str, Any] = dict(summarise(times))
    result.update({name: {"skipped": why} for name, why in skipped.items()})
    return {name: result[name] for name in [p.name for p in crowd]}


def _close(p: Participant) -> None:
    if p.close is not None:
        p.close()
        p.close = None
    p.hook = None


def dynamo_counts(
    case: Case, schedule: Schedule | None, watched: bool, steps: int
) -> dict[str, Any]:
    """Graphs, compiled frames and graph breaks of ``steps`` compiled training steps."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    p = Participant("count", case, torch.device("cpu"))
    p.forward = torch.compile(p.model)
    if watched:
        with gradientflow.watch(p.model, p.opt, schedule=schedule) as mon:
            p.hook = lambda step, loss: mon.log(loss=loss)
            p.run(steps)
    else:
        p.run(steps)
    breaks = dict(counters["graph_break"])
    return {
        "graphs": int(counters["stats"]["unique_graphs"]),
        "frames_compiled": int(counters["frames"]["ok"]),
        "graph_breaks": int(sum(breaks.values())),
        "break_reasons": sorted({str(r).strip().splitlines()[0] for r in breaks})[:5],
    }


def compile_counts(case: Case, steps: int) -> dict[str, Any]:
    """Dynamo counts unwatched, watched (default) and watched (everything); the excess."""
    out = {
        "unwatched": dynamo_counts(case, None, False, steps),
        "default": dynamo_counts(case, None, True, steps),
        "everything": dynamo_counts(case, Schedule.everything(), True, steps),
    }
    for mode in ("default", "everything"):
        out[f"added_by_{mode}"] = {
            k: out[mode][k] - out["unwatched"][k]
            for k in ("graphs", "frames_compiled", "graph_breaks")
        }
    torch._dynamo.reset()
    return out


def cell(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return "skipped"
    return f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"


def print_table(results: dict[str, dict[str, Any]], names: list[str]) -> None:
    models = list(results)
    width = max(19, *(len(m) for m in models))
    print(f"{'watcher':24}" + "".join(f"{m:>{width + 1}}" for m in models))
    print(f"{'plain ms/step':24}" + "".join(
        f"{results[m]['plain']['ms']:>{width + 1}.1f}" for m in models))  # fmt: skip
    for name in names:
        print(f"{name:24}" + "".join(f"{cell(results[m][name]):>{width + 1}}" for m in models))
    for m in models:
        for name in names:
            if "skipped" in results[m][name]:
                print(f"  {m}, {name}: {results[m][name]['skipped']}")


def print_compile(counts: dict[str, Any]) -> None:
    for model, c in counts.items():
        for mode in ("unwatched", "default", "everything"):
            d = c[mode]
            print(
                f"  {model:12} {mode:10} graphs {d['graphs']:3}  frames {d['frames_compiled']:3}"
                f"  graph breaks {d['graph_breaks']:3}  {'; '.join(d['break_reasons'])[:120]}"
            )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma list of " + ",".join(CASES))
    ap.add_argument("--methods", default=",".join(_peers.WATCHERS), help="comma list")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=50, help="steps per watcher per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=0, help="override every model's batch size")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: fair on shared CPUs)")
    ap.add_argument("--budget-s", type=float, default=900.0, help="max est. seconds a watcher")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile: plain vs gradientflow")
    ap.add_argument("--quick", action="store_true", help="mlp16x512, batch 32, 3 rounds x 10")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.rounds, args.steps, args.batch, args.warmup = "mlp16x512", 3, 10, 32, 2
    if args.compile:
        keep = ("plain", "plain (A/A)", "gradientflow default", "gradientflow everything")
        args.methods = ",".join(m for m in args.methods.split(",") if m in keep)
    unknown = [m for m in args.methods.split(",") if m not in _peers.WATCHERS]
    unknown += [m for m in args.models.split(",") if m not in CASES]
    if unknown:
        ap.error(f"unknown model or method: {', '.join(unknown)}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every model; print the table; return the results (what ``--json`` writes)."""
    torch.set_num_threads(args.threads)
    names = ["plain"] + [m for m in args.methods.split(",") if m != "plain"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds x "
        f"{args.steps} steps per watcher, interleaved; load average {load:.1f}"
        + (", torch.compile" if args.compile else "")
    )
    results: dict[str, dict[str, Any]] = {}
    counts: dict[str, Any] = {}
    start = time.perf_counter()
    for model in args.models.split(","):
        case = CASES[model]
        if args.batch:
            case = dataclasses.replace(case, input_shape=(args.batch, *case.input_shape[1:]))
        results[model] = measure(case, names, args)
        print(f"  measured {model} ({time.perf_counter() - start:.0f} s so far)", flush=True)
        if args.compile:
            counts[model] = compile_counts(case, steps=3)
    _peers.finish()
    print_table(results, names)
    if counts:
        print("torch.compile: dynamo counts over 3 steps (first step full, then not)")
        print_compile(counts)
    meta = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    meta.update(torch=torch.__version__, load_average=load, seconds=time.perf_counter() - start)
    return {"meta": meta, "ratios": results, "compile_counts": counts}


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    out = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(json_safe(out), indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
