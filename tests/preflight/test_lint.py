"""The static lint: each check fires on its case and stays quiet on the fixed model."""

from __future__ import annotations

import torch
from torch import nn

from gradientflow.demo import mlp
from gradientflow.preflight import preflight
from gradientflow.remedies import reinit
from tests.preflight.nets import probe, stack


def _kinds(model: nn.Module, x: torch.Tensor) -> dict[str, str]:
    return {f.kind: f.severity for f in preflight(model, x).findings if f.evidence.get("lint")}


def test_relu_with_default_init_is_flagged_and_he_init_is_not() -> None:
    model = mlp(depth=20, width=64, activation=nn.ReLU)
    x = torch.randn(64, 64)
    assert _kinds(model, x)["relu_default_init"] == "warning"
    assert "relu_default_init" not in _kinds(reinit(model, "he"), x)


def test_selu_needs_lecun_init_and_alpha_dropout() -> None:
    x = torch.randn(64, 64)
    default = mlp(depth=10, width=64, activation=nn.SELU)
    assert _kinds(default, x)["selu_init"] == "warning"
    assert "selu_init" not in _kinds(reinit(default, "lecun"), x)
    drop = nn.Sequential(nn.Linear(64, 64), nn.SELU(), nn.Dropout(0.1), nn.Linear(64, 10))
    assert _kinds(drop, x)["selu_dropout"] == "warning"
    alpha = nn.Sequential(nn.Linear(64, 64), nn.SELU(), nn.AlphaDropout(0.1), nn.Linear(64, 10))
    assert "selu_dropout" not in _kinds(alpha, x)


def test_deep_squashing_stacks() -> None:
    # sigmoid: a warning while the gradient vanishes; tanh at a healthy init: information only
    assert _kinds(mlp(), torch.randn(64, 64))["deep_squashing_stack"] == "warning"
    assert _kinds(stack("tanh", 1.761, 0.05), probe())["deep_squashing_stack"] == "info"
    shallow = mlp(depth=4, width=16)
    assert "deep_squashing_stack" not in _kinds(shallow, torch.randn(8, 64))


def test_post_ln_transformer() -> None:
    def encoder(norm_first: bool, layers: int) -> nn.Module:
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=norm_first)
        return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    x = torch.randn(4, 10, 32)
    assert _kinds(encoder(False, 6), x)["post_ln_transformer"] == "warning"
    assert _kinds(encoder(False, 2), x)["post_ln_transformer"] == "info"
    assert "post_ln_transformer" not in _kinds(encoder(True, 6), x)
