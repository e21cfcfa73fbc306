"""What preflight could not measure is not judged: no weight layer, one, or gradients that do not
reach them give the verdict "unknown" (not "healthy"), a layer without a gradient is "not
measured" (not NaN); a measured first/last ratio is judged even without a χ₁ estimate."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradientflow.preflight import preflight
from gradientflow.preflight.verdict import CRITICAL_RATIO, WARNING_RATIO


class _Dense(nn.Module):
    """A custom dense layer that calls F.linear itself (as a LoRA or quantised wrapper)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        lin = nn.Linear(n_in, n_out)
        self.weight, self.bias = lin.weight, lin.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def _grads(model: nn.Module, kinds: tuple[type[nn.Module], ...], *inputs: torch.Tensor, loss_fn, y):  # type: ignore[no-untyped-def]
    """‖∂L/∂s‖ at every call of a layer of ``kinds``, in forward order, by plain autograd."""
    outs: list[torch.Tensor] = []

    def keep(m: nn.Module, i: object, o: torch.Tensor) -> None:
        if o.requires_grad:
            o.retain_grad()
        outs.append(o)

    handles = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, kinds)]
    loss_fn(model(*inputs), y).backward()
    for h in handles:
        h.remove()
    return [None if o.grad is None else float(o.grad.norm()) for o in outs]


def test_a_model_with_no_or_one_weight_layer_is_not_judged_healthy() -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(20):
        layers += [_Dense(32, 32), nn.Sigmoid()]
    custom = preflight(nn.Sequential(*layers, _Dense(32, 4)), torch.randn(16, 32))
    assert custom.depth == 0 and custom.findings == []
    assert custom.verdict == "unknown" and not custom.healthy
    assert custom.reason is not None and "no weight layer" in custom.reason
    assert "F.linear" in custom.reason
    text = str(custom)
    assert "Not judged: no weight layer" in text and "No problem found" not in text
    doc = json.loads(json.dumps(custom.to_dict(), allow_nan=False))
    assert doc["verdict"] == "unknown" and doc["healthy"] is False

    one = preflight(nn.Sequential(nn.Linear(8, 8), nn.Tanh()), torch.randn(4, 8))
    assert one.verdict == "unknown" and one.reason is not None and "only one" in one.reason


def _three(scale_first: float, scale_middle: float) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4)
    )
    with torch.no_grad():  # no first bias: tanh stays linear on the tiny s_0
        model[0].bias.zero_()
        model[0].weight.mul_(scale_first)
        model[2].weight.mul_(scale_middle)
    return model


@pytest.mark.parametrize(
    ("scale_first", "scale_middle", "kind"),
    [(1.0, 1e-6, "vanishing"), (1e-5, 1e5, "exploding")],
)
def test_three_layer_net_is_judged_from_its_measured_ratio(
    scale_first: float, scale_middle: float, kind: str
) -> None:
    model = _three(scale_first, scale_middle)
    x, y = torch.randn(64, 32), torch.randn(64, 4)
    pf = preflight(model, x, nn.MSELoss(), y)
    first, _, last = _grads(model, (nn.Linear,), x, loss_fn=nn.MSELoss(), y=y)
    assert first is not None and last is not None
    ratio = first / last
    assert pf.first_to_last == pytest.approx(ratio, rel=1e-4)
    assert pf.chi1 is None and pf.measured_chi1 is None  # no χ₁ for this net
    r = ratio if kind == "vanishing" else 1 / ratio
    expected = "critical" if r < CRITICAL_RATIO else "warning" if r < WARNING_RATIO else None
    assert expected is not None  # the scales put the ratio beyond the diagnosis' thresholds
    (f,) = pf.of_kind(kind)
    assert f.severity == expected and f.evidence["first_to_last"] == pytest.approx(ratio, rel=1e-4)
    assert f.evidence["per_layer_gain"] is None and "0" in f.message
    assert pf.verdict == "unhealthy" and not pf.healthy


def test_a_layer_applied_many_times_is_judged_from_the_measured_ratio() -> None:
    class Looped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp, self.lin, self.out = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.sigmoid(self.inp(x))
            for _ in range(20):
                h = torch.sigmoid(self.lin(h))
            return self.out(h)

    torch.manual_seed(0)
    model = Looped()
    x, y = torch.randn(64, 64), torch.randn(64, 4)
    pf = preflight(model, x, nn.MSELoss(), y)
    grads = _grads(model, (nn.Linear,), x, loss_fn=nn.MSELoss(), y=y)
    assert pf.depth == 3  # the shared layer is measured at its first call
    assert grads[0] is not None and grads[-1] is not None
    assert pf.first_to_last == pytest.approx(grads[0] / grads[-1], rel=1e-3)
    assert pf.first_to_last < CRITICAL_RATIO  # 21 sigmoid slopes (<= 1/4 each) in between
    (f,) = pf.of_kind("vanishing")
    assert f.severity == "critical" and not pf.healthy


class _TwoIn(nn.Module):
    """Two inputs, a frozen stem (a pretrained feature layer), a trainable head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.h1 = nn.Linear(16, 32), nn.Linear(32, 32)
        self.h2, self.out = nn.Linear(32, 32), nn.Linear(32, 2)
        self.stem.requires_grad_(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.h1(torch.relu(self.stem(a + b))))
        return self.out(torch.relu(self.h2(h)))


def test_a_frozen_stem_is_not_measured_rather_than_non_finite() -> None:
    model = _TwoIn()
    a, b, y = torch.randn(8, 16), torch.randn(8, 16), torch.randn(8, 2)
    for inputs in ((a, b), {"a": a, "b": b}):
        pf = preflight(model, inputs, nn.MSELoss(), y)
        assert pf.of_kind("nonfinite") == []
        assert [s.measured for s in pf.layers] == [False, True, True, True]
        assert "not measured (no gradient reached them): 'stem'" in str(pf)
        ref = _grads(model, (nn.Linear,), a, b, loss_fn=nn.MSELoss(), y=y)
        assert ref[0] is None  # plain autograd: no gradient at the stem either
        for stat, g in zip(pf.layers[1:], ref[1:], strict=True):
            assert g is not None and stat.grad_sq == pytest.approx(g**2, rel=1e-5)
        assert pf.first_to_last == pytest.approx(ref[1] / ref[3], rel=1e-5)  # type: ignore[operator]
        assert pf.verdict != "unknown"


def test_a_loss_that_ignores_the_output_is_not_judged_and_not_non_finite() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2)
    )
    pf = preflight(model, torch.randn(4, 8), loss_fn=lambda out: torch.tensor(1.0))
    assert pf.of_kind("nonfinite") == [] and pf.findings == []
    assert not any(s.measured for s in pf.layers)
    assert pf.verdict == "unknown" and pf.reason is not None
    assert "reached 0 of the 3 weight layers" in pf.reason

    # a gradient that is measured and NaN is still non-finite
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    bad = preflight(model, torch.randn(4, 8))
    (f,) = bad.of_kind("nonfinite")
    assert f.severity == "critical" and "2" in f.layers
