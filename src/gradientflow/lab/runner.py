"""Run lab experiments in parallel processes and write results.json, summary.md, report.html.

Each experiment runs in its own worker process (spawn context, one torch thread each), so
``--jobs 2`` uses two cores. An experiment that raises is recorded as failed with its error;
the lab never stops half-way.

>>> results = run_lab(["mean-field"], quick=True, out_dir=None, jobs=1, progress=False)
>>> [r.passed for r in results]
[True]
"""

from __future__ import annotations

import json
import multiprocessing
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from gradientflow.errors import GradientFlowError
from gradientflow.lab import experiments
from gradientflow.lab.record import ExperimentResult
from gradientflow.lab.reporting import spread, write_html, write_summary


def run_one(name: str, quick: bool, out_dir: str | None, seed: int = 0) -> dict[str, object]:
    """Run one experiment in this process (one torch thread); a failure becomes a record.

    Figures are drawn for seed 0 only.
    """
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    figures_to = Path(out_dir) if out_dir and seed == 0 else None
    try:
        result = experiments.load(name)(quick=quick, out_dir=figures_to, seed=seed)
    except Exception as exc:  # a crashing experiment is a failed criterion, not a lab crash
        result = ExperimentResult(
            name=name,
            claim=experiments.describe_safe(name),
            source="",
            setup={},
            measured={},
            criterion="experiment runs to completion",
            passed=False,
            quick=quick,
            seed=seed,
            error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}",
        )
    result.seconds = round(time.perf_counter() - start, 2)
    return result.to_dict()


def check_lab_arguments(names: Sequence[str] | None, jobs: int, seeds: int) -> list[str]:
    """The experiments to run (all when ``names`` is empty), after checking the names,
    ``jobs`` and ``seeds``: each problem a GradientFlowError, before any work or folder."""
    chosen = list(names) if names else experiments.names()
    for name in chosen:
        experiments.load(name)  # unknown name -> GradientFlowError
    if jobs < 1:
        raise GradientFlowError(f"lab: --jobs must be >= 1, got {jobs}")
    if seeds < 1:
        raise GradientFlowError(f"lab: --seeds must be >= 1, got {seeds}")
    return chosen


def run_lab(
    names: list[str] | None = None,
    *,
    quick: bool = False,
    out_dir: str | Path | None = "lab-results",
    jobs: int = 2,
    progress: bool = True,
    seeds: int = 1,
) -> list[ExperimentResult]:
    """Run the named experiments (all if None), each with seeds ``0 .. seeds-1``.

    Writes ``results.json``, ``summary.md`` and ``report.html`` (with figures) to ``out_dir``
    unless it is None. Results come back in registry order, seeds in order within each.
    """
    chosen = check_lab_arguments(names, jobs, seeds)
    tasks = [(name, seed) for name in chosen for seed in range(seeds)]
    out = str(Path(out_dir)) if out_dir is not None else None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    records: dict[tuple[str, int], dict[str, object]] = {}
    bar = _progress(len(tasks), progress)
    start = time.perf_counter()
    if jobs == 1:
        for task in tasks:
            records[task] = run_one(task[0], quick, out, task[1])
            _tick(bar, task, records[task])
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx) as pool:
            futures: dict[Future[dict[str, object]], tuple[str, int]] = {
                pool.submit(run_one, t[0], quick, out, t[1]): t for t in _longest_first(tasks)
            }
            for fut in as_completed(futures):
                records[futures[fut]] = fut.result()
                _tick(bar, futures[fut], records[futures[fut]])
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - start
    results = [ExperimentResult.from_dict(records[t]) for t in tasks]
    if out is not None:
        write_outputs(results, Path(out), quick=quick, wall_seconds=wall, jobs=jobs)
    return results


def write_outputs(
    results: list[ExperimentResult], out: Path, *, quick: bool, wall_seconds: float, jobs: int
) -> None:
    """results.json (every record, plus each experiment's spread over seeds), summary.md and
    report.html in ``out``."""
    meta = {
        "quick": quick,
        "wall_seconds": round(wall_seconds, 1),
        "jobs": jobs,
        "passed": all(r.passed for r in results),
        "n": len({r.name for r in results}),
        "seeds": sorted({r.seed for r in results}),
    }
    payload = {
        "meta": meta,
        "results": [r.to_dict() for r in results],
        "spread": spread(results),
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    write_summary(results, out / "summary.md", meta)
    write_html(results, out / "report.html", meta)


# Quick-mode cost order (CPU seconds of one seed, measured at load 0.5: trainability 57,
# lstm-vs-rnn 36, post-ln-warmup 20, qk-layernorm-lr 12, mnist1d-baselines 11, residual 10,
# depth-sigmoid 10, z-loss 6, the rest under 3), so the long experiments start first and the
# pool stays busy.
_COST = [
    "trainability",
    "lstm-vs-rnn",
    "post-ln-warmup",
    "qk-layernorm-lr",
    "mnist1d-baselines",
    "residual",
    "depth-sigmoid",
    "z-loss",
    "pretraining",
    "mean-field",
    "batchnorm",
    "dying-relu",
    "hardware",
    "selu-fixed-point",
    "glorot-init",
]


def _longest_first(tasks: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return sorted(tasks, key=lambda t: _COST.index(t[0]) if t[0] in _COST else -1)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="lab", unit="exp")


def _tick(bar: Any, task: tuple[str, int], record: dict[str, object]) -> None:
    if bar is None:
        return
    mark = "pass" if record.get("passed") else "FAIL"
    bar.set_postfix_str(f"{task[0]} seed {task[1]}: {mark} ({record.get('seconds')} s)")
    bar.update(1)
