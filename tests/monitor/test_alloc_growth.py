"""No per-step growth of Python allocations: an unrecorded step keeps nothing, and a recorded
step keeps no more than its record's numbers (tracemalloc over hundreds of steps, beside the
same loop unwatched).

Torch itself keeps ~48 bytes a training step during roughly the first 2,000 steps of a
process (seen here with torch 2.13 on the CPU, watched or not, whatever the model), then
nothing. A comparison made while that fill runs on one side and not on the other measures
torch, not the monitor, so the module first runs a plain loop past it (``settled``).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import Schedule

#: Plain steps run before anything is measured: past torch's one-off fill of its first ~2,000
#: steps of a process (a process whose tests ran steps before is past it already).
SETTLE_STEPS = 2500

#: Recorded: 0, 1, 10, 100, 1000 (full: 0, 100, 1000); steps 101-999 are unrecorded.
SPARSE = Schedule(dense_steps=2, max_stride=1000)
WARMUP, WINDOW = 101, 290  # three windows: steps 101-970


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


@pytest.fixture(scope="module", autouse=True)
def settled() -> Iterator[None]:
    _steps(None, _model(), SETTLE_STEPS)
    yield


def _unrecorded_extra() -> int:
    """Bytes kept over the unrecorded windows watched, beyond the same loop unwatched."""
    model = _model()
    with gradientflow.watch(model, schedule=SPARSE) as mon:
        grown = _grown_bytes(mon, model, WARMUP, WINDOW)  # warm-up: lazy structures built
    return grown - _plain(WARMUP, WINDOW)


def test_the_windows_are_unrecorded() -> None:
    last = WARMUP + 3 * WINDOW - 1
    assert SPARSE.records(WARMUP - 1) and SPARSE.is_full(WARMUP - 1)
    assert not any(SPARSE.records(k) for k in range(WARMUP, last + 1))


def test_unrecorded_steps_keep_nothing() -> None:
    extra = _unrecorded_extra()
    assert extra < 2048, f"{extra} bytes kept over {WINDOW} unrecorded steps (beyond torch's own)"


def test_a_leak_of_one_float_a_step_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measurement sees a monitor that keeps one Python float a step (~32 bytes)."""
    kept: list[float] = []
    step = gradientflow.Monitor.step

    def leaky(self: gradientflow.Monitor, loss: Any = None) -> None:
        kept.append(float(len(kept)) + 0.5)
        step(self, loss)

    monkeypatch.setattr(gradientflow.Monitor, "step", leaky)
    assert _unrecorded_extra() > 2048


def test_recorded_steps_keep_only_their_records() -> None:
    model = _model()
    with gradientflow.watch(model, schedule=Schedule.everything(), flush_every=10) as mon:
        grown = _grown_bytes(mon, model, 50, 200)
    extra = grown - _plain(50, 200)
    # a record holds ~20 columns x 3 layers of float64 (< 1 KB a step once stored)
    assert extra < 200 * 2048, f"{extra} bytes over 200 recorded steps (> 2 KB a step)"
