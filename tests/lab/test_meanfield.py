"""Mean-field χ₁ against SCIENCE.md's table (Poole et al. 2016; Schoenholz et al. 2017)."""

from __future__ import annotations

import math

import pytest

from gradientflow.errors import GradientFlowError
from gradientflow.lab import meanfield
from gradientflow.lab.experiments.mean_field import measure_gain

TANH_TABLE = [
    (1.0, 0.759),
    (1.25, 0.863),
    (1.5, 0.939),
    (1.761, 1.000),
    (2.0, 1.048),
    (2.5, 1.134),
    (3.0, 1.209),
    (4.0, 1.342),
]


@pytest.mark.parametrize(("sigma_w2", "expected"), TANH_TABLE)
def test_tanh_chi1_matches_table(sigma_w2: float, expected: float) -> None:
    assert meanfield.chi1("tanh", sigma_w2, 0.05) == pytest.approx(expected, abs=6e-4)


def test_sigmoid_chi1_values() -> None:
    assert meanfield.chi1("sigmoid", 1 / 3, 0.0) == pytest.approx(0.020, abs=5e-4)
    assert meanfield.chi1("sigmoid", 1.0, 0.0) == pytest.approx(0.056, abs=5e-4)
    assert meanfield.chi1("sigmoid", 2.0, 0.0) == pytest.approx(0.101, abs=5e-4)


CRITICAL = [(0.01, 1.424), (0.05, 1.761), (0.1, 1.986), (0.3, 2.505), (1.0, 3.443)]


@pytest.mark.parametrize(("sigma_b2", "critical"), CRITICAL)
def test_critical_sigma_w2(sigma_b2: float, critical: float) -> None:
    assert meanfield.critical_sigma_w2("tanh", sigma_b2) == pytest.approx(critical, abs=2e-3)


def test_kinked_activations_use_split_quadrature() -> None:
    # ReLU with He init: χ₁ = 1 exactly; SELU with LeCun init: ≈ 1.07, fixed point q* = 1.
    assert meanfield.chi1("relu", 2.0, 0.0) == pytest.approx(1.0, abs=1e-9)
    assert meanfield.chi1("selu", 1.0, 0.0) == pytest.approx(1.07, abs=5e-3)
    assert meanfield.q_star("selu", 1.0, 0.0) == pytest.approx(1.0, abs=1e-6)


def test_gauss_expect_moments() -> None:
    assert meanfield.gauss_expect(lambda x: x**2, 3.0) == pytest.approx(3.0)
    assert meanfield.gauss_expect(lambda x: x**4, 2.0) == pytest.approx(12.0)
    # E[relu(z)^2] = q/2, exact only with the split rule
    assert meanfield.gauss_expect(lambda x: (x > 0) * x**2, 2.0, kink=True) == pytest.approx(1.0)


def test_depth_scale() -> None:
    assert 6 * meanfield.depth_scale(0.759) == pytest.approx(21.8, abs=0.1)
    assert math.isinf(meanfield.depth_scale(1.0))
    with pytest.raises(GradientFlowError, match="χ₁"):
        meanfield.depth_scale(0.0)


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(GradientFlowError, match="unknown activation 'swish'"):
        meanfield.chi1("swish", 1.0)
    with pytest.raises(GradientFlowError, match="q must be >= 0"):
        meanfield.gauss_expect(lambda x: x, -1.0)


@pytest.mark.parametrize(("sigma_w2", "expected"), [(1.0, 0.759), (2.5, 1.134)])
def test_random_net_gain_matches_prediction(sigma_w2: float, expected: float) -> None:
    measured = measure_gain("tanh", sigma_w2, 0.05, width=256, depth=12, batch=16)
    assert measured == pytest.approx(expected, rel=0.05)
