"""reinit: each scheme's statistics against its formula; only= and the recurrent layers."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies import add_batchnorm, reinit, swap_activation
from gradientflow.remedies.lsuv import lsuv
from tests.remedies.helpers import same, snapshot

N_IN, N_OUT = 400, 300
TOL = 4 * (2 / (N_IN * N_OUT)) ** 0.5  # 4 sigma of a sample variance


@pytest.mark.parametrize(
    ("scheme", "expected_var"),
    [("he", 2 / N_IN), ("lecun", 1 / N_IN), ("xavier", 2 / (N_IN + N_OUT))],
)
def test_variance_matches_the_formula(scheme: str, expected_var: float) -> None:
    model = nn.Sequential(nn.Linear(N_IN, N_OUT), nn.ReLU(), nn.Linear(N_OUT, 2))
    snap = snapshot(model)
    new = reinit(model, scheme)
    w = new[0].weight.detach()
    assert float(w.var()) == pytest.approx(expected_var, rel=TOL)
    assert float(new[0].bias.detach().abs().max()) == 0.0
    assert same(model, snap)


def test_orthogonal_and_only() -> None:
    model = nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.BatchNorm1d(32), nn.Linear(32, 4))
    new = reinit(model, "orthogonal", only=["0"])
    w = new[0].weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(32), atol=1e-5)
    assert torch.equal(new[3].weight, model[3].weight)
    assert torch.equal(new[2].weight, model[2].weight)
    with pytest.raises(GradientFlowError, match=r"no submodule named 'fc9'"):
        reinit(model, "he", only=["fc9"])


def test_recurrent_layers_per_gate() -> None:
    lstm = reinit(nn.LSTM(16, 16), "orthogonal")
    for block in lstm.weight_hh_l0.detach().chunk(4):
        assert torch.allclose(block @ block.T, torch.eye(16), atol=1e-5)
    assert torch.all(lstm.bias_ih_l0[16:32] == 1) and torch.all(lstm.bias_hh_l0 == 0)


def test_errors() -> None:
    with pytest.raises(GradientFlowError, match=r"unknown scheme 'kaiming'"):
        reinit(nn.Linear(2, 2), "kaiming")
    with pytest.raises(GradientFlowError, match=r"no Linear, Conv or RNN"):
        reinit(nn.Sequential(nn.ReLU()), "he")


class _TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.mlp = nn.Sequential(nn.Linear(16, 16), nn.Tanh())
        self.dec = nn.Linear(16, 50)
        self.dec.weight = self.emb.weight  # weight tying

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dec(self.mlp(self.emb(ids)))


@pytest.mark.parametrize(
    "transform",
    [
        lambda m: reinit(m, "he"),
        lambda m: swap_activation(m, "relu"),
        lambda m: lsuv(m, [torch.randint(0, 50, (64,))]),
    ],
    ids=["reinit", "swap_activation", "lsuv"],
)
def test_a_weight_tied_to_the_embedding_keeps_the_tie_and_the_values(transform: Any) -> None:
    torch.manual_seed(0)
    model = _TiedLM()
    new = transform(model)
    assert new.dec.weight is new.emb.weight
    assert torch.equal(new.emb.weight, model.emb.weight)
    assert not torch.equal(new.mlp[0].weight, model.mlp[0].weight)  # the rest is re-drawn


def _normed(kind: str) -> nn.Sequential:
    from torch.nn.utils import parametrizations

    make = {
        "weight_norm": parametrizations.weight_norm,
        "spectral_norm": parametrizations.spectral_norm,
        "legacy weight_norm": nn.utils.weight_norm,
        "legacy spectral_norm": nn.utils.spectral_norm,
    }[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the legacy weight_norm is deprecated
        middle = make(nn.Linear(16, 16))
    return nn.Sequential(nn.Linear(16, 16), nn.Sigmoid(), middle, nn.Sigmoid(), nn.Linear(16, 2))


@pytest.mark.parametrize(
    "kind", ["weight_norm", "spectral_norm", "legacy weight_norm", "legacy spectral_norm"]
)
def test_parametrized_weights_are_refused_by_name(kind: str) -> None:
    model = _normed(kind)
    transforms: list[Any] = [
        lambda m: reinit(m, "he"),
        lambda m: swap_activation(m, "relu"),
        lambda m: lsuv(m, [torch.randn(64, 16)]),
    ]
    for transform in transforms:  # re-drawn, the weight was silently recomputed or lost
        with pytest.raises(GradientFlowError, match=r"layer '2' .*parametrized weights"):
            transform(model)
    if kind == "legacy weight_norm":  # torch cannot even copy it
        with pytest.raises(GradientFlowError, match=r"layer '2' \(legacy weight_norm\)"):
            add_batchnorm(model)
        return
    # what does not re-draw the parametrized layer still works, and sees it as a layer
    assert not torch.equal(reinit(model, "he", only=["0"])[0].weight, model[0].weight)
    kept = swap_activation(model, "relu", init="none")
    assert torch.equal(kept[2].weight, model[2].weight)
    kinds = [type(m).__name__ for m in add_batchnorm(model)]
    assert kinds[3:5] == [type(model[2]).__name__, "FeatureBatchNorm"]


def test_only_names_a_weight_layer_and_a_string_is_one_name() -> None:
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2))
    new = reinit(model, "orthogonal", only="0.0")  # one name, not the characters '0', '.'
    w = new[0][0].weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(4), atol=1e-5)
    assert torch.equal(new[1].weight, model[1].weight)
    for only in (["0"], ["0.1"]):  # a block, an activation
        with pytest.raises(GradientFlowError) as err:
            reinit(model, "he", only=only)
        text = str(err.value)
        assert "names no Linear, Conv or RNN layer" in text and "'0.0', '1'" in text
        assert "Sequential has no" not in text
