"""Statistics are probes: the schema is their union; a new statistic is one class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

import gradientflow
from gradientflow import Schedule, Trace
from gradientflow.probes import BUILTIN, Probe, RecurrentProbe
from gradientflow.trace import LAYER_METRICS, STEP_SCALARS


def test_the_trace_schema_is_the_union_of_the_probes_columns() -> None:
    declared = {c for p in BUILTIN for c in p.layer_columns}
    assert set(LAYER_METRICS) >= declared  # (and whatever other probes declared)
    assert declared == {
        "grad_norm", "weight_norm", "update_norm", "rel_update", "zero_frac", "nonfinite",
        "out_grad_norm", "out_rms", "in_dead_frac", "in_sat_frac", "grad_norm_postclip",
    }  # fmt: skip
    assert set(STEP_SCALARS) >= {"loss", "skipped", "full", "global_grad_norm"}
    assert all(LAYER_METRICS[c] for c in declared)  # each with a description


class MaxGrad(Probe):
    """A new statistic: the largest |gradient| entry of each layer."""

    layer_columns: ClassVar[Mapping[str, str]] = {"max_abs_grad": "largest |g| entry per layer"}

    def on_step(self, step: int, full: bool) -> Mapping[str, torch.Tensor]:
        index = self.watched.index
        values = torch.stack([p.grad.abs().max().double() for p in index.params])
        out = torch.full((index.n_layers,), float("-inf"), dtype=torch.float64)
        return {"max_abs_grad": out.scatter_reduce_(0, index.owner_idx, values, "amax")}


def test_a_new_statistic_is_one_probe() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradientflow.watch(model, opt, probes=[MaxGrad()]) as mon:
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 3)).pow(2).mean().backward()
            expected = [max(float(p.grad.abs().max()) for p in m.parameters()) for m in model[::2]]
            opt.step()
    got = mon.trace.metrics["max_abs_grad"]
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got[-1], expected, rtol=1e-6)
    hand = Trace.build(["a"], steps=[0], max_abs_grad=[[1.5]])  # the Trace knows it now
    assert hand.metrics["max_abs_grad"][0, 0] == 1.5


class Selu(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.selu(x)


@pytest.mark.parametrize("functional", [False, True])
def test_selu_and_relu6_are_named_as_in_kinds(functional: bool) -> None:
    torch.manual_seed(0)
    selu: nn.Module = Selu() if functional else nn.SELU()
    model = nn.Sequential(nn.Linear(3, 4), selu, nn.Linear(4, 4), nn.ReLU6(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gradientflow.watch(model, opt, schedule=Schedule.everything()) as mon:
        opt.zero_grad()
        model(torch.randn(8, 3)).sum().backward()
        opt.step()
    assert [x.input_activation for x in mon.trace.layers] == [None, "selu", "relu6"]


def test_probe_lifecycle_without_a_monitor() -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(2, 4)
    model = nn.Sequential()
    model.add_module("rnn", rnn)
    probe = RecurrentProbe(rnn, "rnn")
    probe.attach()
    assert len(rnn._forward_hooks) == 1
    y, _ = rnn(torch.randn(5, 3, 2))
    y[-1].sum().backward()
    assert probe.on_step(0, True) == {}
    probe.detach()
    assert len(rnn._forward_hooks) == 0
    assert probe.extras()["bptt/rnn/dl_dh"].shape == (1, 5)
