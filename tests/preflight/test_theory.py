"""Mean-field theory against closed forms and Monte Carlo (Poole et al. 2016)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradientflow.errors import GradientFlowError
from gradientflow.lab import meanfield
from gradientflow.preflight import theory


def _monte_carlo(dphi, q: float, n: int = 2_000_000) -> float:  # type: ignore[no-untyped-def]
    z = np.random.default_rng(0).standard_normal(n)
    return float(np.mean(dphi(math.sqrt(q) * z) ** 2))


@pytest.mark.parametrize("sigma_w2", [1.0, 2.0, 3.0])
def test_relu_family_closed_forms(sigma_w2: float) -> None:
    # E[relu'(h)^2] = 1/2 and E[leaky'(h)^2] = (1 + a^2)/2, whatever q
    assert theory.chi1("relu", sigma_w2) == pytest.approx(sigma_w2 / 2, rel=1e-9)
    expected = sigma_w2 * (1 + 0.01**2) / 2
    assert theory.chi1("leaky_relu", sigma_w2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("q", [0.1, 1.0, 4.0])
def test_erf_derivative_closed_form(q: float) -> None:
    # erf'(x) = 2/sqrt(pi) exp(-x^2): E[erf'(sqrt(q) z)^2] = (4/pi) / sqrt(1 + 4q)
    expected = 4 / math.pi / math.sqrt(1 + 4 * q)
    assert theory.chi1_at("erf", 1.0, q) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["gelu", "elu", "selu", "silu", "tanh"])
def test_smooth_and_kinked_expectations_match_monte_carlo(name: str) -> None:
    _, dphi, _ = theory.ACTIVATIONS[name]
    for q in (0.3, 1.0, 2.5):
        assert theory.chi1_at(name, 1.0, q) == pytest.approx(_monte_carlo(dphi, q), rel=5e-3)


def test_fixed_point_is_a_fixed_point() -> None:
    for name, sw2, sb2 in [("tanh", 1.5, 0.05), ("gelu", 2.0, 0.01), ("selu", 1.0, 0.0)]:
        q = theory.q_star(name, sw2, sb2)
        assert theory.q_map(name, q, sw2, sb2) == pytest.approx(q, rel=1e-8)


def test_near_critical_fixed_point_converges() -> None:
    # slow convergence near the edge of chaos: bisection finishes the job
    q = theory.q_star("tanh", 1.0, 1e-4)
    assert theory.q_map("tanh", q, 1.0, 1e-4) == pytest.approx(q, rel=1e-6)


def test_depth_scale_both_sides_of_one() -> None:
    assert 6 * theory.depth_scale(1.048) == pytest.approx(6 / math.log(1.048))
    assert theory.depth_scale(1.048) > 0
    with pytest.raises(GradientFlowError, match="χ₁ must be > 0"):
        theory.depth_scale(float("nan"))


def test_lab_module_is_a_re_export() -> None:
    assert meanfield.chi1 is theory.chi1
    assert meanfield.q_star is theory.q_star
    assert meanfield.chi1("tanh", 1.5, 0.05) == pytest.approx(0.939, abs=6e-4)


def test_a_map_without_a_fixed_point_raises_instead_of_returning_an_iterate() -> None:
    # ReLU at σ_w² = 2: q_map(q) = q + σ_b² by hand, it grows by 0.1 a layer forever
    assert theory.q_map("relu", 21.0, 2.0, 0.1) == pytest.approx(21.1, rel=1e-12)
    for name, sw2, sb2 in [("relu", 2.0, 0.1), ("elu", 2.0, 0.0), ("selu", 2.0, 0.0)]:
        with pytest.raises(GradientFlowError, match="no fixed point"):
            theory.q_star(name, sw2, sb2)
    # a map that contracts to q* = 0 (tanh, σ_w² <= 1, no bias) still has its fixed point
    for sw2 in (0.5, 1.0):
        q = theory.q_star("tanh", sw2, 0.0)
        assert 0 <= q < 1e-6 and abs(theory.q_map("tanh", q, sw2, 0.0) - q) < 1e-12
        assert theory.chi1("tanh", sw2, 0.0) == pytest.approx(sw2, rel=1e-5)  # tanh'(0) = 1


def test_preflight_says_chi1_unknown_without_a_fixed_point() -> None:
    import torch
    from torch import nn

    from gradientflow.preflight import preflight
    from tests.preflight.nets import probe, stack

    # ELU at σ_w² = 2, no bias (He init): the variance grows without a fixed point
    model = nn.Sequential(*[nn.ELU() if isinstance(m, nn.ReLU) else m for m in stack("relu", 2.0)])
    pf = preflight(model, probe())
    assert pf.prediction.activation == "elu" and pf.prediction.sigma_w2 == pytest.approx(2, 0.05)
    assert pf.chi1 is None and "no fixed point" in pf.prediction.reason
    assert "mean field: does not apply" in str(pf)
    assert pf.measured_chi1 is not None and torch.isfinite(torch.tensor(pf.measured_chi1))
