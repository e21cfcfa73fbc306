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


def test_foreach_norm_of_float32_lists_reuses_plans_only_for_the_same_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All-float32 lists take a plan cached by their sizes (a model's gradients, step after
    step): new values with the same sizes, then other sizes, then a large tensor among them,
    each against float64, NaN and Inf included."""
    from gradientflow.probes import layers
    from gradientflow.probes.layers import FLAT_MIN, SMALL_NUMEL

    plans = layers.FlatPlans()
    monkeypatch.setattr(layers, "_FLAT_PLANS", plans)
    g = torch.Generator().manual_seed(3)

    def check(ts: list[torch.Tensor]) -> None:
        got = foreach_norm(ts).tolist()
        assert len(got) == len(ts)
        for t, n in zip(ts, got, strict=True):
            ref = _ref_norm(t)
            assert (math.isnan(n) and math.isnan(ref)) or n == pytest.approx(ref, rel=1e-5)

    shapes = [(16, 9), (9,), (0,), (3, 5)] * (FLAT_MIN // 2)
    for scale in (1.0, 1e-25, 1e25):  # the same sizes three times: one plan, new values
        ts = [torch.randn(*s, generator=g) * scale for s in shapes]
        ts[3] = ts[3].t()  # not contiguous
        check(ts)
    ts[1][2], ts[4][0, 0] = math.nan, math.inf
    check(ts)
    check([torch.randn(4, 4, generator=g) for _ in range(FLAT_MIN)])  # other sizes
    check(ts[:-1])  # a prefix of known sizes: its own plan
    check([*ts, torch.randn(SMALL_NUMEL + 3, generator=g)])  # small ones and a large one
    check(ts[: FLAT_MIN - 1])  # too few for the flat path
    assert len(plans._plans) == 5  # one per list of sizes


def test_gradient_probe_when_some_gradients_are_missing_then_present_then_missing() -> None:
    """with_grad() reads every p.grad once a step; a layer without gradient is NaN, and the
    set of layers with gradients may change from step to step."""
    from gradientflow.probes.gradients import GradientProbe
    from gradientflow.probes.layers import Watched, candidate_modules

    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(20)])
    watched = Watched(model, None, candidate_modules(model))
    watched.build({})
    probe = GradientProbe()
    probe.attach(watched)
    for frozen in ({3, 7}, set(), {0, 19}):
        model.zero_grad(set_to_none=True)
        model(torch.randn(2, 4)).sum().backward()
        for j in frozen:
            model[j].weight.grad = model[j].bias.grad = None
        got = probe.on_step(0, True)
        for j, layer in enumerate(model):
            n, bad = float(got["grad_norm"][j]), float(got["nonfinite"][j])
            if j in frozen:
                assert math.isnan(n) and math.isnan(bad), j
                continue
            ref = math.sqrt(sum(_ref_norm(p.grad) ** 2 for p in layer.parameters()))
            assert n == pytest.approx(ref, rel=1e-6) and bad == 0, j
        expected = [_ref_norm(p.grad) ** 2 for p in model.parameters() if p.grad is not None]
        total = float(got["global_grad_norm"])
        assert total == pytest.approx(math.sqrt(sum(expected)), rel=1e-6)


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


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e-3, 1.0, 1e10, 1e20, 1e30])
def test_norm_sq_of_large_float32_tensors_by_blas_matches_float64(scale: float) -> None:
    """Above FEW_FLOAT64 entries a contiguous float32 tensor is summed by BLAS sdot in float32:
    the squares overflow above ~1e19 and vanish below ~1e-19, so those are redone in float64;
    a transposed one takes torch's norm."""
    from gradientflow.probes.layers import FEW_FLOAT64, blas_sq

    g = torch.Generator().manual_seed(3)
    t = (torch.randn(128, 65, generator=g, dtype=torch.float64) * scale).float()
    assert t.numel() > FEW_FLOAT64 and blas_sq(t) is not None and blas_sq(t.t()) is None
    ref = _ref_norm(t) ** 2
    assert float(norm_sq(t)) == pytest.approx(ref, rel=1e-5)
    assert float(norm_sq(t.t())) == pytest.approx(ref, rel=1e-5)
    assert float(foreach_norm([t, t.t()])[0]) == pytest.approx(math.sqrt(ref), rel=1e-5)


def test_blas_sq_takes_plain_tensors_and_parameters_only() -> None:
    """A tensor subclass (DTensor, a wrapper subclass) may have no storage of its own: it
    keeps torch's norm, with the same number."""

    class Wrapped(torch.Tensor):
        pass

    from gradientflow.probes.layers import blas_sq

    t = torch.full((8192,), 0.5)
    sub = t.as_subclass(Wrapped)
    assert blas_sq(t) == blas_sq(torch.nn.Parameter(t)) == 2048.0 and blas_sq(sub) is None
    assert float(norm_sq(sub)) == pytest.approx(2048.0, rel=1e-6)


@pytest.mark.filterwarnings("error")  # numpy's overflow warning must not reach the user
def test_blas_sq_keeps_inf_nan_and_zero_through_norm_sq_and_foreach_norm() -> None:
    huge = torch.full((8192,), 1e30)
    assert float(norm_sq(huge)) == pytest.approx(8192e60, rel=1e-6)
    assert float(foreach_norm([huge])[0]) == pytest.approx(math.sqrt(8192) * 1e30, rel=1e-6)
    big = torch.ones(8192)
    inf, nan = big.clone(), big.clone()
    inf[5], nan[7] = math.inf, math.nan
    got = [float(norm_sq(t)) for t in (inf, nan, torch.zeros(8192))]
    assert got[0] == math.inf and math.isnan(got[1]) and got[2] == 0.0
    listed = foreach_norm([inf, nan, torch.zeros(8192), big]).tolist()
    assert listed[0] == math.inf and math.isnan(listed[1]) and listed[2:] == [0.0, math.sqrt(8192)]


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


@pytest.mark.parametrize("side", [5, 60])  # 1,200 entries (|x| copied), 172,800 (no copy)
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
@pytest.mark.parametrize("channel_first", [True, False])
def test_dead_fraction_matches_the_any_nonzero_reference(
    activation: str, channel_first: bool, side: int
) -> None:
    from gradientflow.probes.activations import FEW_ENTRIES

    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 8, side, side, generator=g)
    assert (x.numel() <= FEW_ENTRIES) == (side == 5)
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


@pytest.mark.parametrize("shape", [(7, 9), (4, 3, 33, 33), (300, 70)])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_counts_match_the_elementwise_reference(activation: str, shape: tuple[int, ...]) -> None:
    """input_counts against element-wise definitions, near the limits, with NaN and +-Inf,
    on small inputs (|x| copied) and large ones (read by reductions)."""
    from gradientflow import kinds
    from gradientflow.probes.activations import input_counts

    g = torch.Generator().manual_seed(4)
    x = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}[activation](
        torch.randn(*shape, generator=g) * 4
    )
    flat = x.view(-1)
    flat[:5] = torch.tensor([math.nan, math.inf, -math.inf, 0.0, 0.0])
    flat[5::17] = 0.0
    x[..., 1] = 0.0  # a dead unit (last dim)
    x[..., 2] = 0.0
    x.view(-1, shape[-1])[3, 2] = -1e-30 if activation != "relu" else 0.0  # one tiny entry lives
    alive, units, sat, entries = input_counts(x, activation, False, 0.01)
    per_unit = x.reshape(-1, shape[-1])
    assert units == shape[-1] and entries == x.numel()
    assert int(alive) == int((per_unit != 0).any(dim=0).sum())
    limits = kinds.SATURATION_LIMITS.get(activation)
    if limits is None:
        assert sat is None
        return
    lo, hi = limits
    ref = sum(1 for v in flat.tolist() if abs(v - (lo + hi) / 2) >= (hi - lo) / 2 - 0.01)
    assert sat is not None and int(sat) == ref


def test_a_layer_called_twice_counts_the_units_and_entries_of_both_calls() -> None:
    """A module called twice in a step (batches of 2 and 6 rows) contributes its fractions
    over the units and entries of both calls, not the mean of the two calls' fractions."""
    from gradientflow.probes.activations import ActivationProbe
    from gradientflow.probes.layers import Watched, candidate_modules

    model = torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Linear(4, 1))
    watched = Watched(model, None, candidate_modules(model))
    watched.build({})
    probe = ActivationProbe()
    probe.attach(watched)
    probe.prepare(0, True)
    a = torch.tensor([[9.0, 0.0, 0.0, 0.0], [9.0, 0.0, 0.0, 0.0]])  # 2 of 8 saturated
    b = torch.zeros(6, 4)  # none saturated
    b[0, 1] = 0.5  # unit 1 lives in the second call only, unit 0 in the first only
    (model(a).sum() + model(b).sum()).backward()
    stats = probe.on_step(0, True)
    probe.detach()
    j = 0  # the only layer: the Linear
    assert float(stats["in_sat_frac"][j]) == pytest.approx(2 / 32)  # not (2/8 + 0/24) / 2
    assert float(stats["in_dead_frac"][j]) == pytest.approx(1 - 2 / 8)  # 1 alive of 4, twice


def test_segment_sums_match_torch_segment_reduce_with_empty_segments() -> None:
    """NumPy's reduceat path (float64 CPU) against torch.segment_reduce, with empty segments
    first, last and in a row (reduceat alone would read each as one entry)."""
    from gradientflow.probes.layers import segment_sums

    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([0, 3, 0, 0, 70000, 1, 0, 17, 0])
    values = torch.randn(int(lengths.sum()), generator=g, dtype=torch.float64) * 1e3
    want = torch.segment_reduce(values, "sum", lengths=lengths)
    got = segment_sums(values, lengths)
    assert got.dtype == torch.float64 and torch.equal(got == 0, lengths == 0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="sum to"):
        segment_sums(values[:-1], lengths)


def _check_against_float64(ts: list[torch.Tensor], got: list[float]) -> None:
    assert len(got) == len(ts)
    for i, (t, n) in enumerate(zip(ts, got, strict=True)):
        ref = _ref_norm(t)
        assert (math.isnan(n) and math.isnan(ref)) or n == pytest.approx(ref, rel=1e-6), i


@pytest.mark.parametrize("scale", [1e-30, 1.0, 1e30])
def test_many_small_tensors_of_few_shapes_are_stacked_per_shape(
    scale: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deep net's gradients (weights and biases in turn, a few empty ones, an unevenly
    spaced shape) take one stack per shape, not the flat buffer: float64 numbers at every
    scale, NaN and Inf kept."""
    from gradientflow.probes import layers

    def refuse(*args: object) -> torch.Tensor:
        raise AssertionError("the flat buffer was used")

    monkeypatch.setattr(layers, "_FLAT_PLANS", layers.FlatPlans())
    monkeypatch.setattr(layers, "flat_norms", refuse)
    g = torch.Generator().manual_seed(4)
    ts: list[torch.Tensor] = []
    for k in range(60):
        ts += [torch.randn(16, 16, generator=g) * scale, torch.randn(16, generator=g) * scale]
        if k % 7 == 3:
            ts += [torch.randn(2, 3, generator=g) * scale, torch.zeros(0)]
    ts[2][0, 0], ts[3][2] = math.nan, -math.inf
    plan = layers._FLAT_PLANS.plan(ts)
    assert plan[3] is not None and any(isinstance(w, list) for w, _ in plan[3])
    _check_against_float64(ts, foreach_norm(ts).tolist())
    assert math.isnan(foreach_norm(ts)[2]) and foreach_norm(ts)[3] == math.inf


def test_tensors_of_known_sizes_but_new_shapes_take_the_flat_buffer() -> None:
    """A plan is found by sizes: the same sizes with other shapes (256 entries as 16x16, then
    as 256 and 16x16 mixed) cannot be stacked together, and are normed in the flat buffer."""
    from gradientflow.probes import layers

    plans = layers.FlatPlans()
    g = torch.Generator().manual_seed(5)
    first = [torch.randn(16, 16, generator=g) for _ in range(40)]
    assert plans.plan(first)[3] is not None
    mixed = [t.reshape(256) if i % 3 == 0 else t for i, t in enumerate(first)]
    small, _, _, groups = plans.plan(mixed)
    assert groups is not None  # the plan of the first list
    assert layers.grouped_norms([mixed[i] for i in small], groups) is None
    old = layers._FLAT_PLANS
    try:
        layers._FLAT_PLANS = plans
        _check_against_float64(mixed, foreach_norm(mixed).tolist())
    finally:
        layers._FLAT_PLANS = old
