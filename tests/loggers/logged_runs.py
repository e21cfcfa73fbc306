"""A short training whose gradients vanish (12 sigmoid layers, weights scaled by 0.3): a run
with a finding for the loggers to log."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

import gradientflow
from gradientflow.monitor import Monitor
from gradientflow.schedule import Schedule

STEPS = 30
DEPTH = 10


def vanishing_run(steps: int = STEPS, seed: int = 0, **options: Any) -> Monitor:
    """Train under ``watch(..., **options)`` (flushes every 10 steps); the closed monitor."""
    torch.manual_seed(seed)
    blocks: list[nn.Module] = [nn.Linear(4, 16), nn.Sigmoid()]
    for _ in range(DEPTH):
        blocks += [nn.Linear(16, 16), nn.Sigmoid()]
    model = nn.Sequential(*blocks, nn.Linear(16, 1))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(0.3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = Schedule(full_every=3)  # rel_update measured on every third step only
    mon = gradientflow.watch(model, opt, schedule=schedule, flush_every=10, **options)
    for _ in range(steps):
        opt.zero_grad()
        x = torch.randn(16, 4)
        loss = (model(x).squeeze(1) - x[:, 0] * x[:, 1]).pow(2).mean()  # no constant fits
        loss.backward()
        mon.log(loss=loss)
        opt.step()
    mon.close()
    return mon


def expected_series(mon: Monitor) -> dict[str, dict[int, float]]:
    """What a logger must hold: ``{key: {step: value}}`` for the measured values."""
    trace = mon.trace
    out: dict[str, dict[int, float]] = {}
    for metric in ("grad_norm", "rel_update"):
        for j, name in enumerate(trace.layer_names):
            col = trace.metrics[metric][:, j]
            ok = np.isfinite(col)
            out[f"{metric}/{name}"] = dict(
                zip(trace.steps[ok].tolist(), col[ok].tolist(), strict=True)
            )
    for name in ("loss", "global_grad_norm"):
        col = trace.scalars[name]
        ok = np.isfinite(col)
        out[name] = dict(zip(trace.steps[ok].tolist(), col[ok].tolist(), strict=True))
    return out
