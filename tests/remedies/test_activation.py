"""swap_activation: structure, companion init (variance against the formula), functional calls."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gradientflow.demo import mlp
from gradientflow.errors import GradientFlowError
from gradientflow.remedies import swap_activation
from gradientflow.remedies.activation import applies as _applies
from tests.realtrain import SEEDS, perturbed
from tests.remedies.helpers import same, snapshot, train_steps


def _kinds(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model]


def test_relu_swap_structure_he_init_and_input_untouched() -> None:
    model = mlp(depth=4, width=512, n_in=512)
    snap = snapshot(model)
    new = swap_activation(model, "relu")
    assert _kinds(new) == ["Linear", "ReLU"] * 3 + ["Linear"]
    assert same(model, snap)  # the input is left alone
    assert all(isinstance(m, nn.Sigmoid) for m in model[1::2])
    # He: Var(w) = 2 / fan_in; the sample variance of n weights is off by ~sqrt(2/n)
    for layer in new[::2]:
        w = layer.weight.detach()
        tol = 4 * (2 / w.numel()) ** 0.5
        assert float(w.var()) * layer.in_features == pytest.approx(2.0, rel=tol)
        assert float(layer.bias.detach().abs().max()) == 0.0


def test_selu_gets_lecun_init_and_alpha_dropout() -> None:
    model = nn.Sequential(nn.Linear(400, 400), nn.Tanh(), nn.Dropout(0.2), nn.Linear(400, 10))
    new = swap_activation(model, "selu")
    assert _kinds(new) == ["Linear", "SELU", "AlphaDropout", "Linear"]
    assert new[2].p == 0.2
    assert float(new[0].weight.detach().var()) * 400 == pytest.approx(1.0, rel=0.02)
    assert type(model[2]) is nn.Dropout


def test_tanh_gets_xavier_and_prelu_is_a_module_with_a_parameter() -> None:
    model = nn.Sequential(nn.Linear(300, 600), nn.Sigmoid(), nn.Linear(600, 2))
    new = swap_activation(model, "tanh")
    # Xavier uniform: Var = 2 / (fan_in + fan_out)
    assert float(new[0].weight.detach().var()) * 900 / 2 == pytest.approx(1.0, rel=0.02)
    prelu = swap_activation(model, "prelu")
    assert isinstance(prelu[1], nn.PReLU) and float(prelu[1].weight.detach()) == 0.25


def test_layers_not_next_to_an_activation_keep_their_values() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 8), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Sigmoid(), nn.Linear(8, 3)
    )
    new = swap_activation(model, "leaky_relu")
    assert torch.equal(new[0].weight, model[0].weight)  # two steps from the activation
    assert torch.equal(new[2].weight, model[2].weight)  # the norm is not re-initialised
    assert not torch.equal(new[1].weight, model[1].weight)  # feeds the activation (via BN)
    assert not torch.equal(new[4].weight, model[4].weight)  # reads the activation
    same_init = swap_activation(model, "elu", init="none")
    assert torch.equal(same_init[1].weight, model[1].weight)


def test_a_shared_activation_is_swapped_at_every_place_and_stays_shared() -> None:
    act = nn.Sigmoid()  # one module used after every layer
    layers = [nn.Linear(64, 64) for _ in range(3)] + [nn.Linear(64, 2)]
    model = nn.Sequential(layers[0], act, layers[1], act, layers[2], act, layers[3])
    new = swap_activation(model, "relu")
    assert _kinds(new) == ["Linear", "ReLU"] * 3 + ["Linear"]
    assert new[1] is new[3] is new[5]
    for old, fresh in zip(model[::2], new[::2], strict=True):  # every neighbour re-initialised
        assert not torch.equal(old.weight, fresh.weight)
    x = torch.randn(5, 64)
    with torch.no_grad():  # the same function as plain PyTorch's
        h = x
        for layer in new[:-1:2]:
            h = torch.relu(layer(h))
        assert torch.equal(new(x), new[6](h))
    assert _applies("relu", model) is None and _applies("relu", new) is not None


def test_new_modules_take_the_mode_of_the_module_they_replace() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 2)).eval()
    new = swap_activation(model, "selu")
    assert [m.training for m in new] == [False] * 4
    x = torch.randn(4, 8)
    assert torch.equal(new(x), new(x))  # AlphaDropout is off in eval mode
    frozen = nn.Sequential(nn.Linear(4, 4), nn.PReLU(), nn.Linear(4, 2))
    frozen[1].requires_grad_(False)
    swapped = swap_activation(frozen, "prelu")
    assert not swapped[1].weight.requires_grad and swapped[0].weight.requires_grad


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.act = nn.Sigmoid()
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.act(self.fc1(x))))


def test_functional_activations_are_reported_with_their_line() -> None:
    model = _Functional()
    with pytest.raises(GradientFlowError) as err:
        swap_activation(model, "selu")
    text = str(err.value)
    assert "F.relu" in text and "_Functional.forward" in text
    assert f"{__file__}:" in text  # file and line
    kept = swap_activation(model, "selu", functional="keep")
    assert isinstance(kept.act, nn.SELU)


def test_bad_input_errors() -> None:
    with pytest.raises(GradientFlowError, match=r"unknown activation 'swish'"):
        swap_activation(mlp(depth=3), "swish")
    with pytest.raises(GradientFlowError, match=r"no activation module"):
        swap_activation(nn.Sequential(nn.Linear(2, 2)), "relu")
    with pytest.raises(GradientFlowError, match=r"must be an nn.Module"):
        swap_activation("model", "relu")  # type: ignore[arg-type]


@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_swapped_deep_sigmoid_net_trains(
    digits_small: tuple[torch.Tensor, torch.Tensor], seed: int
) -> None:
    x, y = digits_small
    net = perturbed(swap_activation(mlp(depth=8, seed=seed), "relu"))
    first, last = train_steps(net, x, y, steps=40, lr=0.003)
    assert first > 2.0 and last < 0.5, (seed, first, last)


def _helper(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x)


class _ViaHelper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _helper(self.act(self.fc(x)))


def test_the_autograd_graph_finds_activations_in_helper_functions() -> None:
    model = _ViaHelper()
    assert isinstance(swap_activation(model, "relu").act, nn.ReLU)  # source reading misses it
    with pytest.raises(GradientFlowError) as err:
        swap_activation(model, "relu", example_input=torch.randn(2, 4))
    text = str(err.value)
    assert "tanh at" in text and "in _helper" in text and "sigmoid" not in text.split("Found")[1]


class _Keywords(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.norm = nn.BatchNorm1d(8)
        self.act = nn.Sigmoid()
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return _helper(self.out(self.act(self.norm(self.fc(x))))) * scale


def test_the_example_forward_leaves_the_model_as_it_was_and_takes_keywords() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 8) * 5 + 3
    model = _Keywords()
    new = swap_activation(model, "relu", example_input=(x,), functional="keep")
    assert isinstance(new.act, nn.ReLU) and new.training and new.norm.training
    assert torch.equal(new.norm.running_mean, torch.zeros(8))  # the forward's stats are undone
    assert int(new.norm.num_batches_tracked) == 0
    with pytest.raises(GradientFlowError, match=r"tanh at .*in _helper"):  # a dict is keywords
        swap_activation(model, "relu", example_input={"x": x, "scale": 2.0})
