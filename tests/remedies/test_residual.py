"""add_residual: which blocks get skips, that x + f(x) is computed, and the errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradientflow.demo import mlp
from gradientflow.errors import GradientFlowError
from gradientflow.remedies import Residual, add_residual
from tests.realtrain import SEEDS, perturbed
from tests.remedies.helpers import same, snapshot, train_steps


def test_shape_preserving_pairs_get_identity_skips() -> None:
    model = mlp(depth=5, width=16, n_in=8)
    snap = snapshot(model)
    new = add_residual(model)
    kinds = [type(m).__name__ for m in new]
    # Linear(8, 16) changes the shape; the three Linear(16, 16) + Sigmoid pairs are wrapped
    assert kinds == ["Linear", "Sigmoid", "Residual", "Residual", "Residual", "Linear"]
    assert same(model, snap)
    block = new[2]
    assert torch.equal(block.block[0].weight, model[2].weight)
    x = torch.randn(5, 16)
    assert torch.allclose(block(x), x + torch.sigmoid(model[2](x)))


def test_norm_and_dropout_stay_inside_the_block_and_conv_needs_same_padding() -> None:
    model = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.1))
    new = add_residual(model)
    assert len(new) == 1 and isinstance(new[0], Residual) and len(new[0].block) == 4
    conv = add_residual(
        nn.Sequential(nn.Conv1d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 4, 3), nn.ReLU())
    )
    assert isinstance(conv[0], Residual) and isinstance(conv[1], nn.Conv1d)
    assert conv(torch.randn(2, 4, 10)).shape == (2, 4, 8)


def test_applying_twice_does_not_nest_skips() -> None:
    once = add_residual(mlp(depth=4, width=8, n_in=8))
    with pytest.raises(GradientFlowError, match=r"no shape-preserving block"):
        add_residual(once)


def test_errors() -> None:
    with pytest.raises(GradientFlowError, match=r"no nn.Sequential"):
        add_residual(nn.Linear(3, 3))
    with pytest.raises(GradientFlowError, match=r"no shape-preserving block"):
        add_residual(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_residual_deep_sigmoid_net_trains(
    digits_small: tuple[torch.Tensor, torch.Tensor], seed: int
) -> None:
    x, y = digits_small
    net = perturbed(add_residual(mlp(depth=8, seed=seed)))
    first, last = train_steps(net, x, y, steps=40, lr=0.01)
    assert last < 0.5 < first, (seed, first, last)
