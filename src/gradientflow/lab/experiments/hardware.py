"""hardware: the same training, timed on every device and precision this machine has.

Source: the seed article ("faster hardware" among the remedies: with GPUs, plain backprop can
afford the many more steps a slowly-learning deep net needs; Schmidhuber's 2015 overview recounts
Ciresan et al. 2010 training deep plain MLPs on MNIST with GPUs). The experiment measures
what this machine gives: steps per second of one fixed training (an 8-layer ReLU MLP, width
512, batch 256, on the digits) on the CPU in float32 and bfloat16 autocast, and on CUDA (float32,
float16 and bfloat16 autocast) or Apple MPS when present. The claim it can check on any machine
is that the runs are the *same training*: every configuration's mean training loss is finite and
within 10% of the CPU float32 run's; where a GPU exists it must also be faster than the CPU.

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
from gradientflow.lab.record import ExperimentResult, check, sig

CLAIM = (
    "Faster hardware buys more training steps per second for the same training; the lab "
    "measures it on every device and precision present."
)
SOURCE = "Seed article (faster hardware as a remedy); Schmidhuber 2015 overview (GPU-trained MLPs)"
WIDTH, DEPTH, BATCH = 512, 8, 256


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


def _time(device: str, dtype: torch.dtype | None, steps: int) -> tuple[float, float]:
    """(steps per second, mean loss) of ``steps`` SGD steps after 3 warm-up steps."""
    data = datasets.digits()
    net = models.mlp(64, 10, width=WIDTH, depth=DEPTH, activation="relu", init="he").to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device) if dtype is torch.float16 else None
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(data.x_train), (steps + 3, BATCH), generator=g)
    x_all, y_all = data.x_train.to(device), data.y_train.to(device)
    total = torch.zeros((), device=device)
    start = 0.0
    for step in range(steps + 3):
        if step == 3:
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
        total += loss.detach().float()
    _sync(device)
    return steps / (time.perf_counter() - start), float(total) / (steps + 3)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
    """Steps/s and final loss for every configuration."""
    steps = 20 if quick else 150
    rates: dict[str, float] = {}
    losses: dict[str, float] = {}
    for label, device, dtype in configurations():
        rates[label], losses[label] = _time(device, dtype, steps)
    ref = losses["cpu float32"]
    checks: list[dict[str, Any]] = []
    for label, value in losses.items():
        check(
            checks,
            f"{label}: mean training loss finite and within 10% of cpu float32's",
            bool(np.isfinite(value)) and abs(value - ref) <= 0.1 * abs(ref) + 1e-3,
        )
    gpu = [k for k in rates if not k.startswith("cpu")]
    if gpu:
        check(
            checks,
            "a GPU configuration is faster than the CPU",
            max(rates[k] for k in gpu) > rates["cpu float32"],
        )
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
            "configurations": list(rates),
        },
        measured={
            "steps_per_second": {k: sig(v) for k, v in rates.items()},
            "mean_loss": {k: sig(v) for k, v in losses.items()},
            "speedup_vs_cpu_float32": {k: sig(v / rates["cpu float32"]) for k, v in rates.items()},
        },
        criterion="every configuration's mean training loss is finite and within 10% of cpu "
        "float32's; "
        "a GPU (if any) is faster than the CPU",
        passed=all(c["passed"] for c in checks),
        checks=checks,
        figures=figures,
        quick=quick,
    )


def _plot(ax: Any, rates: dict[str, float]) -> None:
    ax.barh(list(rates), list(rates.values()))
    ax.set_xlabel("training steps per second")
    ax.set_title(f"same training, {DEPTH}×{WIDTH} MLP, batch {BATCH}")
