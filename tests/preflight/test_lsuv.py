"""reinit:lsuv (Mishkin & Matas 2016) fixes the gradient ratio at init, from data."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradientflow.demo import mlp
from gradientflow.errors import GradientFlowError
from gradientflow.lab import datasets
from gradientflow.preflight import preflight
from gradientflow.remedies import REGISTRY
from gradientflow.remedies.lsuv import lsuv
from tests.preflight.nets import conv_net, weight_grad_ratio

SEEDS = (0, 1, 2)


def _tiny_tanh(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(12):
        lin = nn.Linear(32, 32)
        nn.init.normal_(lin.weight, 0.0, 0.01)
        layers += [lin, nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def _in_band(ratio: float) -> bool:
    return 0.1 <= ratio <= 10


def test_lsuv_fixes_the_sigmoid_demo() -> None:
    data = datasets.digits()
    x, y = data.x_train[:64], data.y_train[:64]
    loss = nn.CrossEntropyLoss()
    remedy = REGISTRY["reinit:lsuv"]
    for seed in SEEDS:
        model = mlp(seed=seed)
        assert weight_grad_ratio(model, x, loss, y) < 1e-12
        new = remedy.apply(model, [(x, y)])
        assert _in_band(weight_grad_ratio(new, x, loss, y))
        pf = preflight(new, x, loss, y)
        assert pf.first_to_last is not None and _in_band(pf.first_to_last)
        assert not pf.of_kind("vanishing")


def test_lsuv_fixes_a_tiny_init_tanh_mlp() -> None:
    for seed in SEEDS:
        model, x = _tiny_tanh(seed), torch.randn(64, 32)
        assert weight_grad_ratio(model, x) < 1e-8
        assert _in_band(weight_grad_ratio(lsuv(model, [x]), x))


def test_lsuv_fixes_a_plain_cnn() -> None:
    for seed in SEEDS:
        model, x = conv_net(seed), torch.randn(32, 3, 8, 8)
        assert weight_grad_ratio(model, x) < 1e-2  # default init: ReLU gain 1/6 a layer
        assert _in_band(weight_grad_ratio(lsuv(model, [(x, None)]), x))


def test_each_layer_has_unit_variance_and_orthonormal_directions() -> None:
    model = mlp(depth=8, width=32)
    x = torch.randn(128, 64)
    new = lsuv(model, [x], tol=0.02)
    h = x
    for m in new:
        h = m(h)
        if isinstance(m, nn.Linear):
            assert float(h.var(dim=0, unbiased=False).mean()) == pytest.approx(1.0, abs=0.02)
            assert float(m.bias.abs().max()) == 0.0
    w = new[2].weight.detach()  # square: W Wᵀ = c² I
    gram = w @ w.T
    c2 = float(gram.diagonal().mean())
    assert torch.allclose(gram, c2 * torch.eye(32), atol=1e-4 * c2 * 32)
    assert math.isfinite(c2) and c2 > 1


def test_input_is_untouched_and_bad_input_is_an_error() -> None:
    model = mlp(depth=4, width=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lsuv(model, [torch.randn(64, 64)])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(GradientFlowError, match="empty"):
        lsuv(model, [])
    with pytest.raises(GradientFlowError, match="needs training batches"):
        REGISTRY["reinit:lsuv"].apply(model)
    assert REGISTRY["reinit:lsuv"].applicable(nn.Sequential(nn.ReLU())) is not None


@pytest.mark.parametrize(
    ("kwargs", "batches", "message"),
    [
        ({"max_iter": 0}, None, r"`max_iter` must be a whole number >= 1, got 0"),
        ({"max_iter": -1}, None, r"`max_iter`"),
        ({"tol": float("nan")}, None, r"`tol` must be a number > 0, got nan"),
        ({"tol": 0.0}, None, r"`tol`"),
        ({}, [torch.randn(0, 64)], r"`batches` starts with an empty batch"),
    ],
)
def test_bad_arguments_are_named(
    kwargs: dict[str, float], batches: list[torch.Tensor] | None, message: str
) -> None:
    with pytest.raises(GradientFlowError, match=message):
        lsuv(mlp(depth=3, width=16), batches or [torch.randn(64, 64)], **kwargs)  # type: ignore[arg-type]


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.unused = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


def test_a_layer_the_forward_never_reaches_gets_the_orthonormal_init() -> None:
    torch.manual_seed(0)
    new = lsuv(_Unused(), [torch.randn(64, 8)])
    w = new.unused.weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(8), atol=1e-5)
    assert float(new.unused.bias.detach().abs().max()) == 0.0
