"""How long ``preflight`` takes on a 100-layer, 512-wide MLP on the CPU (goal: under 2 s).

Run: ``PYTHONPATH=src python benchmarks/preflight_speed.py [--threads N] [--repeats R]``.
Prints the median wall time of R calls (after one warm-up call), with and without the
input–output Jacobian, and the time of one plain forward + backward pass for scale.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from gradientflow.preflight import preflight

DEPTH, WIDTH, BATCH, CLASSES = 100, 512, 64, 10


def build(seed: int = 0) -> nn.Sequential:
    """A 100-layer tanh MLP at PyTorch's default init, 10 outputs."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(DEPTH - 1):
        layers += [nn.Linear(WIDTH, WIDTH), nn.Tanh()]
    layers.append(nn.Linear(WIDTH, CLASSES))
    return nn.Sequential(*layers)


def _median_time(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build()
    x = torch.randn(BATCH, WIDTH)

    def plain() -> None:
        model(x).sum().backward()
        model.zero_grad(set_to_none=True)

    t_plain = _median_time(plain, args.repeats)
    t_pf = _median_time(lambda: preflight(model, x), args.repeats)
    t_nojac = _median_time(lambda: preflight(model, x, jacobian=False), args.repeats)
    print(f"{DEPTH}-layer, {WIDTH}-wide MLP, batch {BATCH}, {args.threads} thread(s):")
    print(f"  one forward + backward:         {t_plain:.3f} s")
    print(f"  preflight (with Jacobian):      {t_pf:.3f} s  ({t_pf / t_plain:.1f}x)")
    print(f"  preflight (jacobian=False):     {t_nojac:.3f} s  ({t_nojac / t_plain:.1f}x)")
    print(f"  goal < 2 s: {'met' if t_pf < 2.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
