"""layerwise_pretrain: the hidden layers learn to keep their input, the output layer is kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradientflow.demo import mlp
from gradientflow.errors import GradientFlowError
from gradientflow.remedies import layerwise_pretrain
from tests.remedies.helpers import same, snapshot


def test_hidden_layers_become_autoencoders(digits_small: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = digits_small
    model = mlp(depth=6, width=32)
    snap = snapshot(model)
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]
    new = layerwise_pretrain(model, batches, steps_per_layer=150)
    assert same(model, snap)
    assert torch.equal(new[10].weight, model[10].weight)  # the output layer is kept
    assert all(not torch.equal(new[i].weight, model[i].weight) for i in range(0, 10, 2))
    # reconstruction error relative to the input's variance: far below 1 (the mean's error)
    assert len(new.pretrain_mse) == 5
    assert max(new.pretrain_mse) < 0.5
    # and the top hidden layer still varies (default init: its outputs are nearly constant)
    with torch.no_grad():
        top_new = new[:10](x).std(0).mean()
        top_old = model[:10](x).std(0).mean()
    assert float(top_new) > 10 * float(top_old)


def test_errors() -> None:
    with pytest.raises(GradientFlowError, match=r"needs an nn.Sequential"):
        layerwise_pretrain(nn.Linear(2, 2), [torch.randn(2, 2)])
    conv = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(GradientFlowError, match=r"module '0' is a Conv1d"):
        layerwise_pretrain(conv, [torch.randn(2, 1, 6)])
    with pytest.raises(GradientFlowError, match=r"`batches` is empty"):
        layerwise_pretrain(mlp(depth=3), [])


def test_seeded_runs_repeat_and_steps_cycle_the_batches() -> None:
    """The lab pretrains with several epochs' batches and ``steps_per_layer`` = their number:
    under the same seed the result must repeat exactly (the decoders are drawn from torch's RNG)."""
    model = mlp(depth=4, width=8, n_in=6, n_out=2)
    batches = [torch.randn(16, 6, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append(layerwise_pretrain(model, batches, steps_per_layer=7, lr=0.05))
    a, b = runs
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert a.pretrain_mse == b.pretrain_mse and len(a.pretrain_mse) == 3


def test_every_module_keeps_its_own_train_flag() -> None:
    model = nn.Sequential(
        nn.Linear(8, 8),
        nn.BatchNorm1d(8),
        nn.Sigmoid(),
        nn.Dropout(0.2),
        nn.Linear(8, 8),
        nn.Sigmoid(),
        nn.Linear(8, 2),
    )
    model[1].eval()  # a frozen BatchNorm in a model being trained
    new = layerwise_pretrain(model, [torch.randn(16, 8) for _ in range(3)], steps_per_layer=3)
    assert [m.training for m in new.modules()] == [m.training for m in model.modules()]
    assert not new[1].training and new.training and new[3].training


@pytest.mark.parametrize(
    ("kwargs", "batches", "message"),
    [
        ({"steps_per_layer": 0}, None, r"`steps_per_layer` must be a whole number >= 1.*got 0"),
        ({"steps_per_layer": -5}, None, r"`steps_per_layer`"),
        ({"steps_per_layer": 2.5}, None, r"`steps_per_layer`"),
        ({"noise": -1.0}, None, r"`noise` must be a number >= 0"),
        ({"lr": float("nan")}, None, r"`lr` must be a number > 0"),
        ({}, [torch.ones(16, 8, dtype=torch.long)], r"`batches` must hold floating-point"),
        ({}, [torch.randn(0, 8)], r"`batches` holds an empty batch"),
    ],
)
def test_bad_arguments_are_named(
    kwargs: dict[str, float], batches: list[torch.Tensor] | None, message: str
) -> None:
    model = mlp(depth=3, width=8, n_in=8)
    with pytest.raises(GradientFlowError, match=message):
        layerwise_pretrain(model, batches or [torch.randn(16, 8)], **kwargs)  # type: ignore[arg-type]


def test_a_failing_stage_is_named() -> None:
    # a BatchNorm trained on batches of one example: torch's own error, named by its stage
    model = nn.Sequential(
        nn.Linear(8, 8),
        nn.BatchNorm1d(8),
        nn.Sigmoid(),
        nn.Linear(8, 8),
        nn.Sigmoid(),
        nn.Linear(8, 2),
    )
    with pytest.raises(GradientFlowError, match=r"stage \('0', '1', '2'\).*ValueError"):
        layerwise_pretrain(model, [torch.randn(1, 8)] * 3, steps_per_layer=2)
