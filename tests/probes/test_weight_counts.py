"""The near-zero weight count: NumPy's count on the CPU gives exactly the integers of the torch
reference (``|w|`` written, compared with the threshold in the tensor's dtype, counted), on
random tensors with NaN, infinities, huge and subnormal values and entries at the threshold."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from gradientflow.probes import weights
from gradientflow.probes.layers import Scratch
from gradientflow.probes.weights import count_large, count_large_torch

THRESHOLDS = [1e-3, 1e-8, 0.1, 1.0, 3.0]


def _nasty(dtype: torch.dtype, seed: int, threshold: float) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(257, 33, generator=g, dtype=torch.float64) * torch.logspace(
        -45, 40, 33, dtype=torch.float64
    )
    x = x.to(dtype)  # subnormal, zero, huge and inf in float32
    flat = x.view(-1)
    at = torch.tensor(threshold, dtype=dtype)
    neighbours = [at, -at, torch.nextafter(at, at * 2), torch.nextafter(at, at * 0)]
    for k, v in enumerate(neighbours):
        flat[k * 7 : k * 7 + 5] = v
        flat[k * 7 + 5] = -v
    flat[100:110] = math.nan
    flat[110:113] = math.inf
    flat[113:116] = -math.inf
    flat[116:120] = -0.0
    flat[120:124] = torch.finfo(dtype).max
    flat[124:128] = torch.finfo(dtype).tiny / 4
    small = torch.rand(7, 5, generator=g, dtype=torch.float64).to(dtype) * 2 * threshold
    return [x, x.t(), x[::3, 1::2], small, x[:0], torch.full((4,), math.nan, dtype=dtype)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_the_host_count_equals_the_torch_reference(
    dtype: torch.dtype, threshold: float, seed: int
) -> None:
    ts = _nasty(dtype, seed, threshold)
    got = count_large(ts, threshold, Scratch())
    ref = count_large_torch(ts, threshold, Scratch())
    assert got.dtype == ref.dtype == torch.float64
    assert got.tolist() == ref.tolist()
    # and the plain definition, element by element in Python
    for t, n in zip(ts, got.tolist(), strict=True):
        limit = float(torch.tensor(threshold, dtype=dtype))
        assert n == sum(1 for v in t.flatten().tolist() if abs(v) > limit)


def test_cpu_float_tensors_take_the_host_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> torch.Tensor:
        raise AssertionError("the torch path was taken")

    monkeypatch.setattr(weights, "count_large_torch", refuse)
    ts = [torch.randn(8, 3), torch.randn(4, dtype=torch.float64).t(), torch.randn(6, 6)[:, 1]]
    ts.append(torch.nn.Parameter(torch.randn(5)))  # requires grad: read without autograd
    assert count_large(ts, 1e-3, Scratch()).shape == (4,)
    with pytest.raises(AssertionError, match="torch path"):
        count_large([torch.randn(3).to(torch.bfloat16)], 1e-3, Scratch())


def test_the_host_count_matches_on_random_weights() -> None:
    g = torch.Generator().manual_seed(3)
    ts = [torch.randn(512, 512, generator=g) * 1e-3, torch.randn(512, generator=g)]
    assert (
        count_large(ts, 1e-3, Scratch()).tolist() == count_large_torch(ts, 1e-3, Scratch()).tolist()
    )


def test_other_dtypes_and_mixed_lists_take_the_torch_path() -> None:
    ts = [torch.tensor([0.5, 1e-4, -2.0], dtype=torch.bfloat16), torch.tensor([1.0, 0.0])]
    assert count_large(ts, 1e-3, Scratch()).tolist() == [2.0, 1.0]
    half = [torch.tensor([np.float16(1e-3), 0.01, -0.01], dtype=torch.float16)]
    assert (
        count_large(half, 1e-3, Scratch()).tolist()
        == count_large_torch(half, 1e-3, Scratch()).tolist()
    )
    assert count_large([], 1e-3, Scratch()).numel() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_stats_one_pass_equals_the_separate_passes(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """weight_stats on the CPU copies, norms and counts each large parameter in one pass and
    the small ones in one flat buffer: the same norms (huge, tiny and NaN ones too), fractions
    and copy as the separate foreach passes, and the values of a float64 reference."""
    from torch import nn

    from gradientflow.probes.layers import Watched, candidate_modules

    torch.manual_seed(0)
    # float32: one weight above SMALL_NUMEL (its own pass), 29 small tensors (one flat pass)
    widths = [40, 300, 300, 20, *[20] * 10, 1]
    layers = [nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
    model = nn.Sequential(*layers).to(dtype)
    with torch.no_grad():
        model[1].weight[0, :5] = 1e30  # float32's sum of squares overflows: redone in float64
        model[4].weight[0, :5] = 1e30
        model[5].weight.mul_(1e-25)  # float32's squares vanish
        model[-1].bias.fill_(math.nan)
        model[0].weight[:, :7] = 0.0
        model[6].weight[3, :] = -1e-3  # at the threshold: near zero
    watched = Watched(model, None, candidate_modules(model))
    watched.build({})
    index = watched.index
    assert index is not None
    copies = [torch.full_like(p, -1.0) for p in index.params]
    one_pass = weights.weight_stats(index, 1e-3, Scratch(), copies)
    monkeypatch.setattr(weights, "_host_countable", lambda t: False)
    separate = weights.weight_stats(index, 1e-3, Scratch())
    for a, b in zip(one_pass, separate, strict=True):
        assert torch.equal(a.isnan(), b.isnan())
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0, equal_nan=True)
    for c, p in zip(copies, index.params, strict=True):
        assert torch.equal(c.isnan(), p.isnan()) and torch.equal(c.nan_to_num(), p.nan_to_num())
    norms, zero = one_pass
    for j, layer in enumerate(model):
        ps = [p.detach().double() for p in layer.parameters()]
        ref_norm = math.sqrt(sum(float(p.square().sum()) for p in ps))
        own = [p.detach() for p in layer.parameters()]  # compared in their dtype; NaN: not large
        ref_large = sum(int((p.abs() > 1e-3).sum()) for p in own)
        ref_zero = 1 - ref_large / sum(p.numel() for p in ps)
        if math.isnan(ref_norm):
            assert math.isnan(float(norms[j]))
        else:
            assert float(norms[j]) == pytest.approx(ref_norm, rel=1e-5)
        assert float(zero[j]) == pytest.approx(ref_zero, abs=1e-12)
