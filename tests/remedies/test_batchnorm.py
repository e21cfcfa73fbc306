"""add_batchnorm: where the norms go, that they normalise, and that nothing else changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradientflow.demo import mlp
from gradientflow.errors import GradientFlowError
from gradientflow.remedies import FeatureBatchNorm, add_batchnorm
from tests.realtrain import SEEDS, perturbed
from tests.remedies.helpers import same, snapshot, train_steps


def test_a_norm_after_each_linear_that_feeds_an_activation() -> None:
    model = mlp(depth=4, width=16)
    snap = snapshot(model)
    new = add_batchnorm(model)
    kinds = [type(m).__name__ for m in new]
    assert kinds == ["Linear", "FeatureBatchNorm", "Sigmoid"] * 3 + ["Linear"]
    assert all(isinstance(m, nn.BatchNorm1d) and m.num_features == 16 for m in new[1:9:3])
    assert same(model, snap)
    # the Linear layers keep their values (only their index in the Sequential moves)
    for old, fresh in zip(model[::2], [m for m in new if isinstance(m, nn.Linear)], strict=True):
        assert torch.equal(old.weight, fresh.weight) and torch.equal(old.bias, fresh.bias)


def test_layers_already_normalised_or_not_feeding_an_activation_are_skipped() -> None:
    model = nn.Sequential(
        nn.Linear(4, 8),
        nn.LayerNorm(8),
        nn.ReLU(),
        nn.Linear(8, 8),
        nn.Dropout(0.1),
        nn.Tanh(),
        nn.Linear(8, 2),
    )
    new = add_batchnorm(model)
    kinds = [type(m).__name__ for m in new]
    assert kinds == [
        "Linear",
        "LayerNorm",
        "ReLU",
        "Linear",
        "FeatureBatchNorm",
        "Dropout",
        "Tanh",
        "Linear",
    ]


def test_a_shared_activation_gets_a_norm_before_each_of_its_places() -> None:
    act = nn.Sigmoid()
    model = nn.Sequential(
        nn.Linear(8, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 2)
    )
    new = add_batchnorm(model)
    assert [type(m).__name__ for m in new] == ["Linear", "FeatureBatchNorm", "Sigmoid"] * 3 + [
        "Linear"
    ]
    assert len({id(m) for m in new if isinstance(m, FeatureBatchNorm)}) == 3
    # a block used twice is one block: it gets one norm, not one per place
    block = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    twice = add_batchnorm(nn.Sequential(block, block))
    assert [type(m).__name__ for m in twice[0]] == ["Linear", "FeatureBatchNorm", "Tanh"]
    assert twice[0] is twice[1]


def test_a_norm_added_to_an_eval_model_is_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).eval()
    new = add_batchnorm(model)
    assert not new[1].training
    before = new[1].running_mean.clone()
    x = torch.randn(4, 8) * 3 + 1
    with torch.no_grad():  # eval BN: the identity with fresh running statistics
        assert torch.allclose(new(x), new[3](torch.tanh(new[0](x) / (1 + 1e-5) ** 0.5)))
    assert torch.equal(new[1].running_mean, before)


def test_conv_gets_batchnorm2d_and_custom_modules_are_wrapped() -> None:
    conv = add_batchnorm(nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Flatten()))
    assert isinstance(conv[1], nn.BatchNorm2d) and conv[1].num_features == 6

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(5, 7)
            self.act = nn.GELU()
            self.out = nn.Linear(7, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.act(self.fc(x)))

    net = Net()
    new = add_batchnorm(net)
    assert isinstance(new.fc, nn.Sequential) and isinstance(new.fc[1], FeatureBatchNorm)
    assert torch.equal(new.fc[0].weight, net.fc.weight)
    assert isinstance(new.out, nn.Linear)
    assert new(torch.randn(4, 5)).shape == (4, 1)


def test_feature_batchnorm_normalises_the_last_dimension_of_3d_inputs() -> None:
    torch.manual_seed(0)
    norm = FeatureBatchNorm(3)
    x = torch.randn(4, 5, 3) * 7 + 2
    y = norm(x)
    flat = x.reshape(-1, 3)
    ref = (flat - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=False) + norm.eps)
    assert torch.allclose(y.reshape(-1, 3), ref, atol=1e-5)


def test_errors_name_the_model() -> None:
    with pytest.raises(GradientFlowError, match=r"add_batchnorm\(\): Sequential has no Linear"):
        add_batchnorm(nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1)))


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_normalised_deep_sigmoid_net_trains(
    digits_small: tuple[torch.Tensor, torch.Tensor], seed: int
) -> None:
    x, y = digits_small
    net = perturbed(add_batchnorm(mlp(depth=8, seed=seed)))
    first, last = train_steps(net, x, y, steps=40, lr=0.01)
    assert first > 2.0 and last < 0.5, (seed, first, last)
