"""The adding problem and the temporal-order task: shapes, rules of the task, baselines, seeds."""

from __future__ import annotations

import pytest
import torch

from gradientflow.errors import GradientFlowError
from gradientflow.lab.tasks import (
    ADDING_BASELINE_MSE,
    TEMPORAL_SYMBOLS,
    adding_batch,
    eval_set,
    fresh_batches,
    temporal_order_batch,
    temporal_positions,
)


def test_adding_problem_rules_and_baseline() -> None:
    x, y = eval_set("adding", 20000, 50, seed=1)
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values <= 1)).all()
    assert (markers[:, :25].sum(1) == 1).all() and (markers[:, 25:].sum(1) == 1).all()
    assert torch.allclose((values * markers).sum(1, keepdim=True), y)
    # predicting 1 gives MSE Var(U1 + U2) = 1/6
    assert float(((y - 1.0) ** 2).mean()) == pytest.approx(ADDING_BASELINE_MSE, abs=0.005)


def test_temporal_order_rules() -> None:
    x, y = temporal_order_batch(4000, 100, generator=torch.Generator().manual_seed(0))
    sym = x.argmax(-1)
    assert (x.sum(-1) == 1).all()
    assert (sym[:, 0] == TEMPORAL_SYMBOLS.index("B")).all()
    assert (sym[:, -1] == TEMPORAL_SYMBOLS.index("E")).all()
    xy = sym >= TEMPORAL_SYMBOLS.index("X")
    assert (xy.sum(1) == 2).all()
    pos = xy.nonzero()[:, 1].view(-1, 2)
    assert ((pos[:, 0] >= 10) & (pos[:, 0] <= 20)).all()
    assert ((pos[:, 1] >= 50) & (pos[:, 1] <= 60)).all()
    first_y = sym[torch.arange(4000), pos[:, 0]] == TEMPORAL_SYMBOLS.index("Y")
    second_y = sym[torch.arange(4000), pos[:, 1]] == TEMPORAL_SYMBOLS.index("Y")
    assert torch.equal(y, 2 * first_y.long() + second_y.long())
    assert torch.bincount(y, minlength=4).min() > 900  # four balanced classes
    assert temporal_positions(200) == ((20, 40), (100, 120))


def test_streams_are_seeded_and_fresh() -> None:
    a = [x for x, _ in fresh_batches("temporal_order", 8, 60, seed=5, n=3)]
    b = [x for x, _ in fresh_batches("temporal_order", 8, 60, seed=5, n=3)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])
    x1, _ = adding_batch(4, 10, generator=torch.Generator().manual_seed(0))
    x2, _ = eval_set("adding", 4, 10, seed=0)
    assert torch.equal(x1, x2)


def test_bad_arguments() -> None:
    with pytest.raises(GradientFlowError, match="seq_len"):
        adding_batch(4, 1)
    with pytest.raises(GradientFlowError, match="unknown task"):
        next(fresh_batches("copy", 4, 10))
    with pytest.raises(GradientFlowError, match="batch_size"):
        temporal_order_batch(0, 100)
