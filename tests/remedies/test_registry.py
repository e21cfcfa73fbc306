"""The registry only collects: each remedy file declares its Remedy objects and their checks."""

from __future__ import annotations

import pytest
from torch import nn

from gradientflow.errors import GradientFlowError
from gradientflow.remedies import REGISTRY, Remedy
from gradientflow.remedies.registry import SOURCES, _collect


def test_the_registry_is_the_union_of_the_files_in_their_order() -> None:
    names = [r.name for module in SOURCES for r in module.REMEDIES]
    assert names == list(REGISTRY)
    assert names[:7] == [f"swap_activation:{a}" for a in REMEDY_ACTIVATIONS]
    assert names[7:] == [
        "add_batchnorm",
        "add_residual",
        "to_lstm",
        "to_gru",
        "reinit:he",
        "reinit:xavier",
        "reinit:lecun",
        "reinit:orthogonal",
        "reinit:lsuv",
        "clip_gradients",
        "layerwise_pretrain",
        "faster_hardware",
        "lower_lr",
        "raise_lr",
        "qk_layernorm",
        "z_loss",
        "warmup",
        "to_pre_ln",
    ]


REMEDY_ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "tanh")


def test_a_new_remedy_is_one_module_and_one_line() -> None:
    class Halve:  # stands for a new file declaring its REMEDIES
        REMEDIES = (Remedy("halve_lr", "lr / 2", "the learning rate halved", lr_factor=0.5),)

    registry = _collect((*SOURCES, Halve))  # type: ignore[arg-type]
    assert list(registry)[-1] == "halve_lr" and len(registry) == len(REGISTRY) + 1
    with pytest.raises(GradientFlowError, match="remedy 'halve_lr' is declared twice"):
        _collect((Halve, Halve))  # type: ignore[arg-type]


def test_checks_live_with_their_transforms() -> None:
    plain = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    reasons = {name: REGISTRY[name].applicable(plain) for name in REGISTRY}
    assert (
        reasons["add_batchnorm"] == "no Linear/Conv feeds an activation without a norm in between"
    )
    assert reasons["to_lstm"] == reasons["to_gru"] == "the model has no vanilla nn.RNN layer"
    assert reasons["swap_activation:relu"] == "the model has no activation module"
    assert reasons["reinit:he"] is None and reasons["lower_lr"] is None
    assert reasons["layerwise_pretrain"] == (
        "layer-wise pretraining needs at least 3 Linear layers and no Conv"
    )


@pytest.mark.parametrize(
    "name", ["swap_activation:prelu", "add_batchnorm", "layerwise_pretrain", "add_residual"]
)
def test_transforms_keep_a_float64_model_in_float64(name: str) -> None:
    """A module a transform adds (a BatchNorm, a PReLU, a pretraining decoder) takes the
    model's dtype: the new float64 model runs forward and backward (it raised a dtype
    mismatch), every parameter float64."""
    import torch

    from gradientflow.remedies.registry import get

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 2)
    ).double()
    batches = [(torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 2, (16,)))] * 3
    remedy = get(name)
    new = remedy.apply(model, batches if remedy.needs_batches else None)
    out = new(batches[0][0])
    nn.functional.cross_entropy(out, batches[0][1]).backward()
    assert out.dtype == torch.float64 and out.shape == (16, 2)
    assert {p.dtype for p in new.parameters()} == {torch.float64}
