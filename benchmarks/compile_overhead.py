"""Per-step time of a ``torch.compile``'d model, watched vs unwatched, and the graph breaks.

Model: a 2-layer TransformerEncoder (width 64, 4 heads, sequence 32, batch 16) with a linear
head, Adam. Modes, each on its own copy of the model, compiled once each:

* plain    — ``torch.compile(model)``, no monitor;
* watched  — ``watch(torch.compile(model), opt)`` with the default schedule.

Rounds of the two modes are interleaved; the ratio is the median over rounds of (watched time /
plain time). Graph breaks and compiled graphs are read from ``torch._dynamo.utils.counters``.
Usage::

    .venv/bin/python benchmarks/compile_overhead.py [--steps 60] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

import gradientflow


def model() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    return nn.Sequential(encoder, nn.Linear(64, 8))


def trainer(
    watched: bool,
) -> tuple[Callable[[int], float], Callable[[], dict[str, int]], Callable[[], None]]:
    """A compiled training; returns run(steps) -> seconds, what compiling it added, and a
    close() for its monitor."""
    breaks, graphs = sum(counters["graph_break"].values()), counters["stats"]["unique_graphs"]
    net = model()
    compiled = torch.compile(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    mon = gradientflow.watch(compiled, opt).attach() if watched else None
    x, y = torch.randn(16, 32, 64), torch.randn(16, 32, 8)

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            opt.zero_grad()
            loss = (compiled(x) - y).pow(2).mean()
            loss.backward()
            if mon is not None:
                mon.log(loss=loss)
            opt.step()
        return time.perf_counter() - start

    run(5)  # compile, and the one recompile after the layer order is known
    seen = {
        "graph_breaks": sum(counters["graph_break"].values()) - breaks,
        "graphs": counters["stats"]["unique_graphs"] - graphs,
    }
    return run, lambda: seen, (mon.close if mon is not None else lambda: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch._dynamo.reset()
    counters.clear()
    plain, plain_counts, _ = trainer(False)
    p_counts = plain_counts()
    watched, watched_counts, close = trainer(True)
    w_counts = watched_counts()
    ratios = []
    for _ in range(args.rounds):
        t_plain, t_watched = plain(args.steps), watched(args.steps)
        ratios.append(t_watched / t_plain)
        print(
            f"plain {1e3 * t_plain / args.steps:7.2f} ms/step  "
            f"watched {1e3 * t_watched / args.steps:7.2f} ms/step"
        )
    print(f"plain:   {p_counts}")
    print(f"watched: {w_counts}")
    print(f"watched / plain (median of {args.rounds} rounds): {statistics.median(ratios):.3f}")
    close()


if __name__ == "__main__":
    main()
