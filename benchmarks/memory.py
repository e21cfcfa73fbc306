"""Memory and disk of a 1,000,000-step run on a 100-layer model, default schedule.

The gradients are computed once and ``monitor.step()`` is called a million times, so the run
measures the monitor's own bookkeeping (records kept, bytes on the host, bytes in ``log_dir``)
rather than the model. Prints the figures beside the 50 MB bound. Usage::

    .venv/bin/python benchmarks/memory.py [--steps 1000000] [--layers 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch
from torch import nn

import gradientflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--layers", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(args.layers)])
    model(torch.ones(4, 8)).sum().backward()
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "log"
        tracemalloc.start()
        start = time.perf_counter()
        with gradientflow.watch(model, log_dir=log_dir) as mon:
            for _ in range(args.steps):
                mon.step()
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        trace = mon.trace
        held = sum(a.nbytes for a in trace.metrics.values()) + sum(
            a.nbytes for a in trace.scalars.values()
        )
        disk = sum(f.stat().st_size for f in log_dir.rglob("*") if f.is_file())
    print(f"{args.steps:,} steps, {args.layers} layers, {elapsed:.0f} s")
    print(f"records kept:       {trace.n_records:,}")
    print(f"trace arrays:       {held / 1e6:.1f} MB (bound 50 MB)")
    print(f"peak Python heap:   {peak / 1e6:.1f} MB (tracemalloc, numpy included)")
    print(f"log_dir on disk:    {disk / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
