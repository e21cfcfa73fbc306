"""The CPU fast paths give the float64 reference numbers: norms taken in float32 and redone in
float64 outside the safe range, dead units from amax/amin, non-finite counts skipped only
where the norm is finite."""

from __future__ import annotations

import math

import pytest
import torch

from gradientflow.probes.activations import input_stats
from gradientflow.probes.layers import foreach_norm, norm_sq


def _ref_norm(t: torch.Tensor) -> float:
    return math.sqrt(sum(float(v) ** 2 for v in t.double().flatten()))


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e-3, 1.0, 1e10, 1e20, 1e30])
def test_foreach_norm_matches_float64_at_every_scale(scale: float) -> None:
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(37, 11, generator=g) * scale, torch.randn(5, generator=g) * scale]
    got = foreach_norm(ts).tolist()
    for t, n in zip(ts, got, strict=True):
        assert n == pytest.approx(_ref_norm(t), rel=1e-5)  # float32 rounding at most


def test_foreach_norm_keeps_inf_nan_and_zero() -> None:
    ts = [torch.tensor([1.0, math.inf]), torch.tensor([math.nan, 1.0]), torch.zeros(3)]
    got = foreach_norm(ts).tolist()
    assert got[0] == math.inf and math.isnan(got[1]) and got[2] == 0.0


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1.0, 1e20, 1e30])
def test_foreach_norm_of_many_small_tensors_matches_float64(scale: float) -> None:
    """Many small float32 tensors (normed in one flat float64 buffer) beside a large one, a
    float64 one, an empty one, a transposed one and NaN/Inf entries."""
    from gradientflow.probes.layers import FLAT_MIN, SMALL_NUMEL

    g = torch.Generator().manual_seed(2)
    ts = [torch.randn(16, 9, generator=g) * scale for _ in range(FLAT_MIN + 5)]
    ts += [torch.randn(SMALL_NUMEL + 1, generator=g) * scale, torch.zeros(0)]
    ts += [torch.randn(7, 3, generator=g, dtype=torch.float64) * scale, ts[0].t()]
    ts[1][0, 0], ts[2][3, 3] = math.nan, -math.inf
    got = foreach_norm(ts).tolist()
    assert math.isnan(got[1]) and got[2] == math.inf and got[-3] == 0.0
    for i, (t, n) in enumerate(zip(ts, got, strict=True)):
        if i not in (1, 2):
            assert n == pytest.approx(_ref_norm(t), rel=1e-5), i


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e-3, 1.0, 1e10, 1e20, 1e30])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_norm_sq_matches_float64_at_every_scale(scale: float, dtype: torch.dtype) -> None:
    """The single-tensor path of the activation hooks: float32 squares overflow above ~1e19
    and vanish below ~1e-19, so those scales must be redone in float64."""
    g = torch.Generator().manual_seed(1)
    t = (torch.randn(64, 33, generator=g, dtype=torch.float64) * scale).to(dtype)
    ref = _ref_norm(t) ** 2
    assert float(norm_sq(t)) == pytest.approx(ref, rel=1e-5)
    assert float(norm_sq(t.t())) == pytest.approx(ref, rel=1e-5)  # not contiguous


def test_norm_sq_keeps_inf_nan_and_zero() -> None:
    got = [float(norm_sq(t)) for t in (torch.tensor([1.0, math.inf]), torch.tensor([math.nan]))]
    assert got[0] == math.inf and math.isnan(got[1]) and float(norm_sq(torch.zeros(3))) == 0.0


def _ref_input_stats(x: torch.Tensor, channel_first: bool) -> float:
    """The former definition: a unit is alive where any sample is nonzero (NaN counts)."""
    if x.dim() >= 2 and channel_first:
        units = x.transpose(0, 1).reshape(x.shape[1], -1).t()
    else:
        units = x.reshape(-1, x.shape[-1])
    return 1.0 - float((units != 0).any(dim=0).double().mean())


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("channel_first", [True, False])
def test_dead_fraction_matches_the_any_nonzero_reference(
    activation: str, channel_first: bool
) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 8, 5, 5, generator=g)
    if activation == "relu":
        x = x.clamp_min(0)
    x[:, 2] = 0.0  # a dead channel
    x[..., 3] = 0.0  # a dead last-dim feature
    x[0, 4, 0, 0] = math.nan  # NaN keeps a unit alive
    x[:, 5] = 0.0
    x[1, 5, 1, 1] = -3.0  # a single negative entry keeps it alive (not after relu)
    if activation == "relu":
        x[1, 5, 1, 1] = 0.0
    dead, _ = input_stats(x, activation, channel_first, 0.01)
    assert float(dead) == pytest.approx(_ref_input_stats(x, channel_first), abs=1e-12)
