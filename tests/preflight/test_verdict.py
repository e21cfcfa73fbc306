"""Preflight's verdict: flags the vanishing nets, passes the healthy ones (3 inits each)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradientflow.demo import mlp
from gradientflow.diagnosis.findings import Finding
from gradientflow.lab import datasets
from gradientflow.preflight import preflight
from tests.preflight.nets import conv_net, probe, stack

SEEDS = (0, 1, 2)


def _serious(findings: list[Finding]) -> list[str]:
    return [f"{f.kind}:{f.severity}" for f in findings if f.severity != "info"]


def test_sigmoid_demo_is_flagged_vanishing_on_digits() -> None:
    data = datasets.digits()
    x, y = data.x_train[:64], data.y_train[:64]
    for seed in SEEDS:
        pf = preflight(mlp(seed=seed), x, nn.CrossEntropyLoss(), y)
        (f,) = pf.of_kind("vanishing")
        assert f.severity == "critical"
        # SCIENCE.md: χ₁ = 0.020 at the default init; the weight-gradient ratio is ~1e-18
        assert pf.chi1 == pytest.approx(0.020, abs=0.002)
        assert pf.first_to_last is not None and pf.first_to_last < 1e-12
        assert "swap_activation:relu" in f.remedies and "reinit:lsuv" in f.remedies
        assert "20" in f.message and "0.020" in f.message


def test_tanh_30_layers_at_sigma_w2_1_is_flagged_vanishing() -> None:
    for seed in SEEDS:
        pf = preflight(stack("tanh", 1.0, 0.05, seed=seed), probe(seed=seed))
        (f,) = pf.of_kind("vanishing")
        assert f.severity in ("warning", "critical")
        assert pf.max_trainable_depth == pytest.approx(21.8, abs=0.5)
        assert f.evidence["depth"] == 30 and f.evidence["chi1"] == pytest.approx(0.759, abs=0.01)
        assert "about 22 layers" in f.message or "about 21" in f.message


@pytest.mark.parametrize(
    ("act", "sigma_w2", "sigma_b2"),
    [
        ("tanh", 1.5, 0.05),
        ("tanh", 1.761, 0.05),
        ("tanh", 2.0, 0.05),
        ("relu", 2.0, 0.0),
        ("selu", 1.0, 0.0),
    ],
)
def test_healthy_30_layer_nets_pass_without_a_warning(
    act: str, sigma_w2: float, sigma_b2: float
) -> None:
    for seed in SEEDS:
        pf = preflight(stack(act, sigma_w2, sigma_b2, seed=seed), probe(seed=seed))
        assert _serious(pf.findings) == [], str(pf)
        assert pf.healthy


def test_deep_tanh_at_sigma_w2_3_is_flagged_exploding_past_6_xi() -> None:
    # χ₁ = 1.209: 6ξ ≈ 32; at 60 layers the gradient grows about 1.21^29.5 ≈ 270x
    pf = preflight(stack("tanh", 3.0, 0.05, depth=60, width=256), probe())
    (f,) = pf.of_kind("exploding")
    assert f.severity == "warning" and pf.max_trainable_depth == pytest.approx(31.7, abs=1)


def test_theory_stays_out_of_nets_it_does_not_describe() -> None:
    residual = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    pf = preflight(conv_net(), torch.randn(8, 3, 8, 8))
    assert pf.chi1 is not None and pf.prediction.activation == "relu"  # a plain conv stack
    bn = nn.Sequential(
        *[m for _ in range(4) for m in (nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU())]
    )
    pf = preflight(bn, torch.randn(32, 16))
    assert pf.chi1 is None and "norm, pool or skip" in pf.prediction.reason

    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(16, 16) for _ in range(5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for b in self.blocks:
                x = x + torch.tanh(b(x))
            return x

    assert preflight(Skip(), torch.randn(32, 16)).chi1 is None
    assert preflight(residual, torch.randn(4, 8)).chi1 is None  # fewer than 3 layers


def test_measured_gradients_match_plain_autograd() -> None:
    model = stack("tanh", 1.5, 0.05, depth=6, width=64)
    x = probe(width=64, batch=16)
    target = torch.randn(16, 64)
    pf = preflight(model, x, nn.MSELoss(), target)
    outs: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda m, i, o: (o.retain_grad(), outs.append(o))[1])
        for m in model
        if isinstance(m, nn.Linear)
    ]
    nn.MSELoss()(model(x), target).backward()
    for h in handles:
        h.remove()
    for stat, out in zip(pf.layers, outs, strict=True):
        assert stat.grad_rms == pytest.approx(float(out.grad.pow(2).mean().sqrt()), rel=1e-5)
        assert stat.act_rms == pytest.approx(float(out.detach().pow(2).mean().sqrt()), rel=1e-5)


def test_jacobian_singular_values_match_autograd() -> None:
    model = stack("tanh", 1.761, 0.05, depth=5, width=12)
    x = probe(width=12, batch=4)
    pf = preflight(model, x)
    assert pf.jacobian is not None
    jac = torch.autograd.functional.jacobian(model, x[:1]).reshape(12, 12)
    ref = torch.linalg.svdvals(jac.double())
    assert pf.jacobian["max"] == pytest.approx(float(ref.max()), rel=1e-4)
    # the smallest singular values are tiny: compare them on the scale of the largest
    got = torch.tensor(pf.jacobian["singular_values"], dtype=torch.float64)
    assert torch.allclose(got, ref, rtol=0, atol=1e-5 * float(ref.max()))
    assert pf.jacobian["spread"] > 100  # 5 tanh layers at the edge of chaos, Gaussian weights


def test_recurrent_radius_and_horizon() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(4, 64, batch_first=True)
            self.fc = nn.Linear(64, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.rnn(x)[0][:, -1])

    net = Net()
    long = preflight(net, torch.randn(8, 200, 4))
    (info,) = long.recurrent
    w = net.rnn.weight_hh_l0.detach().double()
    assert info["w_hh_radius"] == pytest.approx(float(torch.linalg.eigvals(w).abs().max()))
    assert 0 < info["jacobian_radius"] < info["w_hh_radius"]  # tanh' <= 1 shrinks it
    assert info["steps"] == 200 and info["horizon"] < 199
    assert [f.kind for f in long.findings] == ["vanishing_through_time"]
    assert preflight(net, torch.randn(8, 5, 4)).findings == []


def test_str_and_json_are_readable() -> None:
    import json
    import re

    pf = preflight(stack("tanh", 1.0, 0.05, depth=40), probe())
    text = str(pf)
    assert re.search(r"χ₁ = 0\.7[56]\d", text), text
    assert "this net has 40" in text and "..." in text and "[warning] vanishing" in text
    doc = json.loads(json.dumps(pf.to_dict(), allow_nan=False))
    assert doc["depth"] == 40 and doc["findings"][0]["kind"] == "vanishing"
    assert len(doc["layers"]) == 40 and doc["layers"][-1]["gain"] == "nan"
