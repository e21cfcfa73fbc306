"""Per-step time of watched vs plain training, measured side by side in one run.

Models: (a) a 16-layer, 512-wide ReLU MLP, batch 128; (b) a small CNN with BatchNorm on 32x32
inputs, batch 64. Optimizers: SGD with momentum, and Adam. Modes:

* plain       — no monitor;
* default     — ``watch(model, opt)``: gradient norms at every step (dense phase), full
                statistics every 50th step;
* everything  — ``watch(model, opt, schedule=Schedule.everything())``: all statistics, every step.

Rounds of each mode are interleaved (plain, default, everything, plain, ...) so that drift in the
machine's speed hits all modes alike; the ratio is the median over rounds of
(mode time / plain time of the same round). Usage::

    .venv/bin/python benchmarks/overhead.py [--steps 100] [--rounds 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import gradientflow
from gradientflow import Schedule


def mlp() -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(16):
        layers += [nn.Linear(512, 512), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def cnn() -> nn.Module:
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(3, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 10),
    )  # fmt: skip


CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], torch.Tensor], int]] = {
    "mlp16x512": (mlp, lambda: torch.randn(128, 512), 512),
    "cnn_bn_32x32": (cnn, lambda: torch.randn(64, 3, 32, 32), 10),
}
OPTS: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
    "sgd_momentum": lambda m: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9),
    "adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-4),
}


def run_steps(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    n: int,
    mon: gradientflow.Monitor | None,
) -> float:
    start = time.perf_counter()
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        loss = model(x).square().mean()
        loss.backward()
        if mon is not None:
            mon.log(loss=loss)
        opt.step()
    return (time.perf_counter() - start) / n


def measure(case: str, opt_name: str, steps: int, rounds: int) -> dict[str, float]:
    build, make_x, _ = CASES[case]
    torch.manual_seed(0)
    model = build()
    opt = OPTS[opt_name](model)
    x = make_x()
    run_steps(model, opt, x, 10, None)  # warm-up
    times: dict[str, list[float]] = {"plain": [], "default": [], "everything": []}
    for _ in range(rounds):
        times["plain"].append(run_steps(model, opt, x, steps, None))
        for mode, schedule in (("default", None), ("everything", Schedule.everything())):
            with gradientflow.watch(model, opt, schedule=schedule) as mon:
                times[mode].append(run_steps(model, opt, x, steps, mon))
    ratios = {
        mode: statistics.median(t / p for t, p in zip(times[mode], times["plain"], strict=True))
        for mode in ("default", "everything")
    }
    ratios["plain_ms"] = 1e3 * statistics.median(times["plain"])
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.steps} steps x "
        f"{args.rounds} rounds per mode, interleaved"
    )
    print(f"{'model':14} {'optimizer':13} {'plain ms/step':>13} {'default':>8} {'everything':>10}")
    for case in CASES:
        for opt_name in OPTS:
            r = measure(case, opt_name, args.steps, args.rounds)
            print(
                f"{case:14} {opt_name:13} {r['plain_ms']:13.2f} {r['default']:8.3f} "
                f"{r['everything']:10.3f}"
            )


if __name__ == "__main__":
    main()
