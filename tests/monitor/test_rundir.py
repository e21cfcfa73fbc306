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


def _train_sparse(
    log_dir: Path, steps: int, width: int = 4, **options: bool
) -> gradientflow.Monitor:
    """Recording every step for 5 steps, then every 10th: a run that trains past its last
    record."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, width), nn.Tanh(), nn.Linear(width, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = gradientflow.Schedule(dense_steps=5, full_every=2, max_stride=10)
    with gradientflow.watch(model, opt, log_dir=log_dir, schedule=schedule, **options) as mon:
        for _ in range(steps):
            opt.zero_grad()
            model(torch.randn(8, 3)).pow(2).mean().backward()
            opt.step()
    return mon


def test_resume_goes_on_after_the_last_trained_step_not_the_last_recorded(tmp_path: Path) -> None:
    """8 steps trained, 0-4 recorded: the resumed run's first step is 8 (its records at the
    stride's multiples, 10 and 20), not 5."""
    _train_sparse(tmp_path / "run", 8)
    mon = _train_sparse(tmp_path / "run", 15, resume=True)
    assert mon.step_count == 23
    back = Trace.load(tmp_path / "run")
    assert back.steps.tolist() == [0, 1, 2, 3, 4, 10, 20]
    assert back.meta["steps_seen"] == 23


@pytest.mark.parametrize("width", [5, 4])
def test_resume_on_another_model_is_refused_at_watch(tmp_path: Path, width: int) -> None:
    """Other layer sizes (width 5), or other layers (a third Linear), are refused by watch()
    before training, naming the difference; the run on disk is untouched."""
    _train_sparse(tmp_path / "run", 3)
    if width == 5:
        with pytest.raises(GradientFlowError, match=r"another model.*'0': 16 there, 20 here"):
            _train_sparse(tmp_path / "run", 2, width=5, resume=True)
    else:
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1), nn.Linear(1, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with pytest.raises(GradientFlowError, match=r"another model.*'3': absent there, 2 here"):
            gradientflow.watch(model, opt, log_dir=tmp_path / "run", resume=True)
    assert Trace.load(tmp_path / "run").steps.tolist() == [0, 1, 2]
    _train_sparse(tmp_path / "run", 1, resume=True)  # the lock was given back


def test_the_lock_is_given_back_when_the_watch_ends(tmp_path: Path) -> None:
    mon = _train(tmp_path / "run", 2)
    _train(tmp_path / "run", 1, resume=True)  # the first monitor, still referenced, holds no lock
    assert mon.step_count == 2


class _HeadFirst(nn.Module):
    """A tied embedding and output head, the head registered first but used last: who owns
    the tied weight follows the forward pass (the embedding), not the registration."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, 10)
        self.emb = nn.Embedding(10, 6)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids).mean(1))


def test_resume_of_a_tied_model_is_accepted_whatever_its_registration_order(
    tmp_path: Path,
) -> None:
    def run(steps: int, **options: bool) -> gradientflow.Monitor:
        torch.manual_seed(0)
        model = _HeadFirst()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with gradientflow.watch(model, opt, log_dir=tmp_path / "run", **options) as mon:
            for _ in range(steps):
                opt.zero_grad()
                model(torch.randint(0, 10, (4, 3))).pow(2).mean().backward()
                opt.step()
        return mon

    first = run(3)
    assert [(x.name, x.n_params) for x in first.trace.layers] == [("emb", 60), ("head", 10)]
    assert run(2, resume=True).step_count == 5
    assert Trace.load(tmp_path / "run").steps.tolist() == [0, 1, 2, 3, 4]
