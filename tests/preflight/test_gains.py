"""pf.chi1 against the per-layer gain measured on random nets (SCIENCE.md's table).

Each case runs on three random inits (seeds 0-2, not chosen for their outcome) of a 30-layer,
256-wide net and asserts on every one; the measured gain is the geometric mean of the
per-layer ratios ‖∂L/∂s_l‖² / ‖∂L/∂s_{l+1}‖² past the first third of the net.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradientflow.preflight import preflight, theory
from tests.preflight.nets import probe, stack

SEEDS = (0, 1, 2)
#: SCIENCE.md: tanh, σ_b² = 0.05
TANH = [(1.0, 0.759), (1.5, 0.939), (2.0, 1.048), (3.0, 1.209)]


@pytest.mark.parametrize(("sigma_w2", "paper"), TANH)
def test_tanh_chi1_matches_paper_and_measured_gain(sigma_w2: float, paper: float) -> None:
    for seed in SEEDS:
        pf = preflight(stack("tanh", sigma_w2, 0.05, seed=seed), probe(seed=seed))
        assert pf.chi1 is not None and pf.measured_chi1 is not None
        # σ_w² and σ_b² are read from the drawn weights, so the prediction wobbles a little
        assert pf.chi1 == pytest.approx(paper, rel=0.01)
        assert pf.measured_chi1 == pytest.approx(pf.chi1, rel=0.05)
        assert pf.prediction.sigma_w2 == pytest.approx(sigma_w2, rel=0.02)


def test_uniform_init_of_the_same_variance_gives_the_same_chi1() -> None:
    for seed in SEEDS:
        pf = preflight(stack("tanh", 1.5, 0.05, seed=seed, uniform=True), probe(seed=seed))
        assert pf.chi1 == pytest.approx(0.939, rel=0.01)
        assert pf.measured_chi1 == pytest.approx(pf.chi1, rel=0.05)


def test_relu_he_is_critical() -> None:
    for seed in SEEDS:
        pf = preflight(stack("relu", 2.0, seed=seed), probe(seed=seed))
        assert pf.chi1 == pytest.approx(1.0, rel=0.01)
        assert pf.measured_chi1 == pytest.approx(1.0, rel=0.05)
        assert pf.max_trainable_depth is not None and pf.max_trainable_depth > 300


def test_selu_lecun_is_slightly_chaotic() -> None:
    # SCIENCE.md: χ₁ ≈ 1.07 with LeCun init; measured here 1.07 too (above 1, under 1.1)
    measured = []
    for seed in SEEDS:
        pf = preflight(stack("selu", 1.0, seed=seed), probe(seed=seed))
        assert pf.chi1 == pytest.approx(1.072, abs=0.01)
        assert pf.measured_chi1 == pytest.approx(pf.chi1, rel=0.05)
        measured.append(pf.measured_chi1)
    assert 1.03 < float(np.median(measured)) < 1.11


def test_gelu_stack_has_a_prediction_that_matches() -> None:
    # GELU's variance map converges slowly from q = 2 to q* = 0.021: the input is put at the
    # fixed point (first layer's output variance = q*), as the theory assumes
    q = theory.q_star("gelu", 2.0, 0.01)
    scale = ((q - 0.01) / 2.0) ** 0.5
    for seed in SEEDS:
        pf = preflight(stack("gelu", 2.0, 0.01, seed=seed), probe(seed=seed) * scale)
        assert pf.chi1 is not None
        assert pf.measured_chi1 == pytest.approx(pf.chi1, rel=0.05)


def test_layer_gains_multiply_to_the_first_to_last_ratio() -> None:
    pf = preflight(stack("tanh", 1.0, 0.05, depth=12), probe())
    gains = [s.gain for s in pf.layers[:-1]]
    assert pf.first_to_last == pytest.approx(float(np.prod(gains)) ** 0.5, rel=1e-6)
    assert pf.depth == 12 and pf.depth_scale == pytest.approx(3.63, abs=0.05)
