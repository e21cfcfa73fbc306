"""The lab's shared models and measuring helpers, checked against plain autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.lab import models, training


@pytest.mark.parametrize(
    ("init", "var_times_fan_in"),
    [("default", 1 / 3), ("he", 2.0), ("lecun", 1.0), (1.761, 1.761)],
)
def test_init_variances(init: models.Init, var_times_fan_in: float) -> None:
    layer = nn.Linear(800, 800)
    models.init_linear(layer, init, bias=0.0)
    assert float(layer.weight.detach().var() * 800) == pytest.approx(var_times_fan_in, rel=0.03)
    assert float(layer.bias.detach().abs().max()) == 0.0


def test_xavier_and_orthogonal() -> None:
    layer = nn.Linear(300, 500)
    models.init_linear(layer, "xavier")
    assert float(layer.weight.detach().var()) == pytest.approx(2 / 800, rel=0.03)
    sq = nn.Linear(64, 64)
    models.init_linear(sq, "orthogonal")
    eye = sq.weight.detach() @ sq.weight.detach().T
    assert torch.allclose(eye, torch.eye(64), atol=1e-5)


def test_mlp_layout_and_seed() -> None:
    a = models.mlp(10, 3, width=8, depth=4, activation="tanh", batchnorm=True, seed=5)
    b = models.mlp(10, 3, width=8, depth=4, activation="tanh", batchnorm=True, seed=5)
    kinds = [type(m).__name__ for m in a]
    assert kinds.count("Linear") == 4 and kinds.count("BatchNorm1d") == 3
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_bad_names_raise() -> None:
    with pytest.raises(GradientFlowError, match="unknown activation 'swishy'"):
        models.mlp(4, 2, activation="swishy")
    with pytest.raises(GradientFlowError, match="unknown init 'glorot'"):
        models.init_linear(nn.Linear(2, 2), "glorot")
    with pytest.raises(GradientFlowError, match="cell must be"):
        models.SequenceRegressor("transformer")


def test_residual_block_starts_as_identity() -> None:
    net = models.ResidualMLP(6, 2, width=8, blocks=3, residual=True)
    net.eval()
    x = torch.randn(5, 6)
    h = net.stem(x)
    assert torch.allclose(net(x), net.head(h), atol=1e-6)
    assert net.depth == 8


def test_lstm_forget_bias_is_one() -> None:
    net = models.SequenceRegressor("lstm", hidden=4)
    bias = dict(net.rnn.named_parameters())["bias_ih_l0"]
    assert torch.equal(bias.detach()[4:8], torch.ones(4))


def test_gradient_profile_matches_autograd() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    x = torch.randn(7, 3)
    y = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    out_norms, w_norms = training.gradient_profile(
        net, x, lambda o: nn.functional.cross_entropy(o, y)
    )
    # reference: dL/ds of the last layer is (softmax - onehot) / n
    logits = net(x)
    ref = (torch.softmax(logits, -1) - nn.functional.one_hot(y, 2)) / 7
    assert out_norms[1] == pytest.approx(float(ref.detach().norm()), rel=1e-5)
    assert w_norms == pytest.approx(training.weight_grad_norms(net, x, y), rel=1e-6)
