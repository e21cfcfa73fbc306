"""No per-step growth of Python allocations: an unrecorded step keeps nothing, and a recorded
step keeps no more than its record's numbers (tracemalloc over hundreds of steps, beside the
same loop unwatched: torch itself keeps ~50 bytes a step that are not the monitor's)."""

from __future__ import annotations

import tracemalloc

import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import Schedule


def _steps(mon: gradientflow.Monitor | None, model: nn.Module, steps: int) -> None:
    x = torch.randn(4, 8)
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        if mon is not None:
            mon.step(loss=0.0)
    if mon is not None:
        mon.recorder.flush()


def _grown_bytes(mon: gradientflow.Monitor | None, model: nn.Module, warmup: int, n: int) -> int:
    """Bytes still allocated after ``n`` steps that follow ``warmup`` steps (watched: after a
    flush), the least over three consecutive windows of ``n`` steps: a leak grows every window,
    while a one-off refill of an interpreter or torch cache shows in one only. Traced from
    before the warm-up: an untraced block freed would hide a traced one."""
    tracemalloc.start()
    try:
        _steps(mon, model, warmup)
        grown = []
        for _ in range(3):
            before = tracemalloc.get_traced_memory()[0]
            _steps(mon, model, n)
            grown.append(tracemalloc.get_traced_memory()[0] - before)
        return min(grown)
    finally:
        tracemalloc.stop()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))


def _plain(warmup: int, steps: int) -> int:
    """The same loop unwatched, after the same warm-up."""
    return _grown_bytes(None, _model(), warmup, steps)


@pytest.mark.xfail(
    strict=True,
    reason="found here: ~48 bytes stay allocated per unrecorded watched step (allocated inside "
    "F.linear's call while the monitor is attached, not by torch alone); not yet traced",
)
def test_unrecorded_steps_keep_nothing() -> None:
    model = _model()
    # recorded: steps 0, 10, ..., 100, 200, ..., 1000, 2000: 1001-1999: nothing
    with gradientflow.watch(model, schedule=Schedule(dense_steps=1, max_stride=1000)) as mon:
        grown = _grown_bytes(mon, model, 1001, 300)  # warm-up: lazy structures built
    extra = grown - _plain(1001, 300)
    assert extra < 2048, f"{extra} bytes kept over 300 unrecorded steps (beyond torch's own)"


def test_recorded_steps_keep_only_their_records() -> None:
    model = _model()
    with gradientflow.watch(model, schedule=Schedule.everything(), flush_every=10) as mon:
        grown = _grown_bytes(mon, model, 50, 200)
    extra = grown - _plain(50, 200)
    # a record holds ~20 columns x 3 layers of float64 (< 1 KB a step once stored)
    assert extra < 200 * 2048, f"{extra} bytes over 200 recorded steps (> 2 KB a step)"
