"""Random small models: the recorded per-layer norms equal plain references, whatever the model.

Hypothesis draws the architecture (depth, widths, activation, bias or not, a frozen layer,
a tied pair), the optimizer and the batch; the monitor's grad_norm, weight_norm and
update_norm at every step must equal norms computed from ``p.grad`` and the weights around the
step, by hand, in float64.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import gradientflow

ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.SELU, nn.LeakyReLU, nn.GELU)


@st.composite
def models(draw: st.DrawFn) -> tuple[nn.Module, str, int, int]:
    seed = draw(st.integers(0, 10_000))
    torch.manual_seed(seed)
    widths = draw(st.lists(st.integers(1, 9), min_size=2, max_size=5))
    act = draw(st.sampled_from(ACTIVATIONS))
    bias = draw(st.booleans())
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b, bias=bias), act()]
    model = nn.Sequential(*layers[:-1])
    if draw(st.booleans()) and len(widths) > 2:
        model[0].requires_grad_(False)  # a frozen first layer
    optimizer = draw(st.sampled_from(["sgd", "momentum", "adam"]))
    batch = draw(st.integers(1, 6))
    return model, optimizer, batch, seed


def _optimizer(name: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-2)
    return torch.optim.SGD(params, lr=0.05, momentum=0.9 if name == "momentum" else 0.0)


def _layer_norm(tensors: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(models())
def test_recorded_norms_equal_the_references(case: tuple[nn.Module, str, int, int]) -> None:
    model, opt_name, batch, seed = case
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(opt_name, trainable)
    gen = torch.Generator().manual_seed(seed)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    want_grad, want_weight, want_update = [], [], []
    with gradientflow.watch(model, opt, schedule=gradientflow.Schedule.everything()) as mon:
        for _ in range(3):
            opt.zero_grad()
            x = torch.randn(batch, linears[0].in_features, generator=gen)
            loss = model(x).pow(2).mean()
            loss.backward()
            before = [[p.detach().clone() for p in m.parameters()] for m in linears]
            want_grad.append(  # a frozen layer has no gradient: NaN, "not measured"
                [
                    _layer_norm([p.grad if p.grad is not None else p * 0 for p in m.parameters()])
                    if any(p.requires_grad for p in m.parameters())
                    else math.nan
                    for m in linears
                ]
            )
            want_weight.append([_layer_norm(list(m.parameters())) for m in linears])
            mon.log(loss)
            opt.step()
            want_update.append(
                [
                    _layer_norm([p - b for p, b in zip(m.parameters(), bs, strict=True)])
                    for m, bs in zip(linears, before, strict=True)
                ]
            )
    trace = mon.trace
    assert trace.layer_names == [str(2 * i) for i in range(len(linears))]
    np.testing.assert_allclose(trace.metrics["grad_norm"], want_grad, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(trace.metrics["weight_norm"], want_weight, rtol=1e-5, atol=1e-12)
    # a float32 weight moves by whole ulps: the realised change may differ from the optimizer's
    # update by a few float32 epsilons of the weight's size
    slack = 4 * np.finfo(np.float32).eps * np.asarray(want_weight)
    got_update = trace.metrics["update_norm"]
    assert np.all(np.abs(got_update - want_update) <= 1e-4 * np.asarray(want_update) + slack)
    assert trace.trainable.tolist() == [
        any(p.requires_grad for p in m.parameters()) for m in linears
    ]
