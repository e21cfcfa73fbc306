"""watch(..., log_dir) on a folder that already holds a run: refused, overwritten or resumed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import GradientFlowError, Trace


def _train(log_dir: Path, steps: int, **options: bool) -> gradientflow.Monitor:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradientflow.watch(model, opt, log_dir=log_dir, flush_every=2, **options) as mon:
        for _ in range(steps):
            opt.zero_grad()
            loss = model(torch.randn(8, 3)).pow(2).mean()
            loss.backward()
            mon.log(loss)
            opt.step()
    return mon


def test_an_existing_run_is_refused_with_both_ways_out_named(tmp_path: Path) -> None:
    _train(tmp_path / "run", 3)
    with pytest.raises(GradientFlowError, match=r"overwrite=True.*resume=True|resume=True"):
        _train(tmp_path / "run", 2)
    assert Trace.load(tmp_path / "run").n_records == 3  # the first run is intact


def test_overwrite_replaces_and_resume_continues_the_steps(tmp_path: Path) -> None:
    _train(tmp_path / "run", 3)
    _train(tmp_path / "run", 2, overwrite=True)
    assert Trace.load(tmp_path / "run").steps.tolist() == [0, 1]
    mon = _train(tmp_path / "run", 3, resume=True)
    assert mon.step_count == 5
    assert Trace.load(tmp_path / "run").steps.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(GradientFlowError, match="not both"):
        _train(tmp_path / "run", 1, overwrite=True, resume=True)


def test_the_lock_is_given_back_when_the_watch_ends(tmp_path: Path) -> None:
    mon = _train(tmp_path / "run", 2)
    _train(tmp_path / "run", 1, resume=True)  # the first monitor, still referenced, holds no lock
    assert mon.step_count == 2
