"""hardware: the same training, timed on every device and precision this machine has.

Source: the seed article ("faster hardware" among the remedies: with GPUs, plain backprop can
afford the many more steps a slowly-learning deep net needs; Schmidhuber's 2015 overview recounts
Ciresan et al. 2010 training deep plain MLPs on MNIST with GPUs). The experiment measures
what this machine gives: steps per second of one fixed training (an 8-layer ReLU MLP, width
512, batch 256, on the digits) on the CPU in float32 and bfloat16 autocast, and on CUDA (float32,
float16 and bfloat16 autocast) or Apple MPS when present.

Said plainly: on a machine without a GPU this experiment measures only time and precision
parity; the "faster" part of the claim is checked only where a GPU exists. Parity means the
*same training*: the same init and the same batches give, step by step over the first
:data:`PARITY_STEPS` steps, losses within :data:`PARITY_TOL` (relative) of CPU float32's. The
negative control is a *different* training of the same shape (another init seed, same batches):
it must fail that criterion (an earlier version compared mean losses within 10%, which any
training of this net passes).

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check, control, sig, verdict

CLAIM = (
    "Faster hardware buys more training steps per second for the same training; the lab "
    "measures it on every device and precision present (on a CPU-only machine: time and "
    "precision parity only)."
)
SOURCE = "Seed article (faster hardware as a remedy); Schmidhuber 2015 overview (GPU-trained MLPs)"
WIDTH, DEPTH, BATCH = 512, 8, 256
PARITY_STEPS, PARITY_TOL, WARMUP = 10, 0.02, 3
NEGATIVE_CONTROL = "cpu float32 from another init seed (a different training, same batches)"


def configurations() -> list[tuple[str, str, torch.dtype | None]]:
    """(label, device, autocast dtype or None) for everything this machine has."""
    confs: list[tuple[str, str, torch.dtype | None]] = [
        ("cpu float32", "cpu", None),
        ("cpu bfloat16", "cpu", torch.bfloat16),
    ]
    if torch.cuda.is_available():
        confs += [
            ("cuda float32", "cuda", None),
            ("cuda float16", "cuda", torch.float16),
            ("cuda bfloat16", "cuda", torch.bfloat16),
        ]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        confs.append(("mps float32", "mps", None))
    return confs


def _time(
    device: str, dtype: torch.dtype | None, steps: int, seed: int
) -> tuple[float, np.ndarray]:
    """(steps per second after WARMUP steps, the loss of every step) of ``steps + WARMUP``
    SGD steps; the batches depend only on ``seed``, the init on ``seed`` too."""
    data = datasets.digits()
    net = models.mlp(64, 10, width=WIDTH, depth=DEPTH, activation="relu", init="he", seed=seed).to(
        device
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device) if dtype is torch.float16 else None
    g = torch.Generator().manual_seed(seed % 1000)
    idx = torch.randint(0, len(data.x_train), (steps + WARMUP, BATCH), generator=g)
    x_all, y_all = data.x_train.to(device), data.y_train.to(device)
    losses = torch.zeros(steps + WARMUP, device=device)
    start = 0.0
    for step in range(steps + WARMUP):
        if step == WARMUP:
            _sync(device)
            start = time.perf_counter()
        xb, yb = x_all[idx[step].to(device)], y_all[idx[step].to(device)]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = nn.functional.cross_entropy(net(xb), yb)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        losses[step] = loss.detach().float()
    _sync(device)
    return steps / (time.perf_counter() - start), losses.cpu().numpy()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def parity_gap(curve: np.ndarray, ref: np.ndarray) -> float:
    """Largest relative difference of two loss curves over their first PARITY_STEPS steps
    (NaN or Inf anywhere there counts as +inf).

    >>> parity_gap(np.array([1.0, 2.0]), np.array([1.0, 2.02]))
    0.0099
    """
    a, b = curve[:PARITY_STEPS], ref[:PARITY_STEPS]
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    return round(float((np.abs(a - b) / np.abs(b)).max()), 4)


def same_training(label: str, gap: float) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    check(
        checks,
        f"{label}: per-step loss within {PARITY_TOL:.0%} of cpu float32's over the first "
        f"{PARITY_STEPS} steps",
        gap <= PARITY_TOL,
    )
    return checks


def run(quick: bool = False, out_dir: Path | None = None, seed: int = 0) -> ExperimentResult:
    """Steps/s and step-by-step loss parity for every configuration."""
    steps = 20 if quick else 150
    rates: dict[str, float] = {}
    curves: dict[str, np.ndarray] = {}
    for label, device, dtype in configurations():
        rates[label], curves[label] = _time(device, dtype, steps, seed)
    ref = curves["cpu float32"]
    gaps = {label: parity_gap(c, ref) for label, c in curves.items()}
    _, other = _time("cpu", None, PARITY_STEPS, seed + 1000)
    control_gap = parity_gap(other, ref)
    checks: list[dict[str, Any]] = []
    for label, gap in gaps.items():
        checks += same_training(label, gap)
    gpu = [k for k in rates if not k.startswith("cpu")]
    if gpu:
        check(
            checks,
            "a GPU configuration is faster than the CPU",
            max(rates[k] for k in gpu) > rates["cpu float32"],
        )
    negative = control(NEGATIVE_CONTROL, same_training("another init", control_gap))
    figures = save_figure(out_dir, "hardware", lambda ax: _plot(ax, rates))
    return ExperimentResult(
        name="hardware",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "model": f"{DEPTH}-layer ReLU MLP, width {WIDTH}, He init",
            "batch": BATCH,
            "steps_timed": steps,
            "torch_threads": torch.get_num_threads(),
            "seed": seed,
            "parity": f"max relative per-step loss difference over the first {PARITY_STEPS} "
            f"steps ≤ {PARITY_TOL}",
            "what_it_checks_here": "time and precision parity only"
            if not any(not k.startswith("cpu") for k in rates)
            else "parity, and a GPU faster than the CPU",
            "configurations": list(rates),
        },
        measured={
            "steps_per_second": {k: sig(v) for k, v in rates.items()},
            "parity_gap": gaps,
            "negative_control_gap": control_gap,
            "mean_loss": {k: sig(float(np.mean(v))) for k, v in curves.items()},
            "speedup_vs_cpu_float32": {k: sig(v / rates["cpu float32"]) for k, v in rates.items()},
        },
        criterion=f"every configuration: per-step loss within {PARITY_TOL:.0%} of cpu float32's "
        f"over the first {PARITY_STEPS} steps (same init, same batches); a GPU, if any, is "
        "faster than the CPU (without a GPU only time and precision parity are checked)",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        seed=seed,
        figures=figures,
        quick=quick,
    )


def _plot(ax: Any, rates: dict[str, float]) -> None:
    ax.barh(list(rates), list(rates.values()))
    ax.set_xlabel("training steps per second")
    ax.set_title(f"same training, {DEPTH}×{WIDTH} MLP, batch {BATCH}")
