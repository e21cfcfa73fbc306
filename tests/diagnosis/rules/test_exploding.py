"""The exploding rule: growth with depth (dL/ds or activations) and spikes over time."""

from __future__ import annotations

import numpy as np
import pytest

from gradientflow.diagnosis.rules import exploding
from gradientflow.trace import Trace
from tests.diagnosis.traces import chain, healthy, layers


def test_backprop_growth_hidden_by_balanced_weight_gradients() -> None:
    # ReLU at sigma_w^2 = 4: dL/ds grows sqrt(2) per layer toward the input (2**9.5 = 724 over
    # 20 layers) while the weight gradients look balanced (SCIENCE.md / the issue: 0.15)
    t = chain(np.sqrt(2), depth=20, activation="relu")
    t.metrics["grad_norm"][:] = np.linspace(0.15, 1.0, 20)
    [f] = exploding.rule(t)
    depth = f.evidence["depth"]
    assert f.severity == "critical" and depth["metric"] == "out_grad_norm"
    assert depth["first_to_last"] == pytest.approx(2**9.5)
    assert depth["per_layer_gain"] == pytest.approx(np.sqrt(2))
    assert f.evidence["spike"] is None
    assert "1.4" in f.message and "19 layers" in f.message
    assert f.remedies[0] == "reinit:he" and "clip_gradients" in f.remedies


def test_activation_growth() -> None:
    steps, depth = 10, 12
    rms = np.tile(1.3 ** np.arange(depth), (steps, 1))  # 1.3**10 = 13.8 over the hidden layers
    t = Trace.build(layers(depth, "tanh"), steps=range(steps), out_rms=rms)
    [f] = exploding.rule(t)
    assert f.evidence["depth"]["metric"] == "out_rms" and f.severity == "warning"
    assert f.evidence["depth"]["first_to_last"] == pytest.approx(1.3**10)
    assert f.remedies[0] == "reinit:xavier"


def test_gradient_spike_over_time() -> None:
    g = np.full(40, 2.0)
    g[25] = 80.0
    t = Trace.build(
        layers(5), steps=range(40), global_grad_norm=g, grad_norm=np.tile(g[:, None] / 3, (1, 5))
    )
    [f] = exploding.rule(t)
    spike = f.evidence["spike"]
    assert f.severity == "warning" and spike["step"] == 25
    assert spike["max_jump"] == pytest.approx(40.0)
    assert f.layers == [f"fc{j}" for j in range(5)]
    assert "step 25" in f.message and f.remedies[0] == "clip_gradients"


def test_a_new_level_is_not_a_spike() -> None:
    # tiny gradients for the first steps (e.g. a zero-initialised head), then normal ones
    g = np.concatenate([np.full(6, 1e-4), np.ones(34)])
    assert exploding.rule(Trace.build(layers(3), steps=range(40), global_grad_norm=g)) == []


def test_huge_spike_is_critical() -> None:
    g = np.full(30, 1.0)
    g[20] = 1e5
    [f] = exploding.rule(Trace.build(layers(3), steps=range(30), global_grad_norm=g))
    assert f.severity == "critical"


def test_sustained_growth_over_time() -> None:
    g = 1.2 ** np.arange(60)  # never 10x its recent median, but 1e4x over the run
    [f] = exploding.rule(Trace.build(layers(3), steps=range(60), global_grad_norm=g))
    assert f.evidence["spike"]["growth"] > exploding.GROWTH_WARNING


def test_healthy_and_vanishing_are_silent() -> None:
    assert exploding.rule(healthy()) == []
    assert exploding.rule(chain(0.14, depth=20)) == []


def test_frozen_layers_are_never_blamed() -> None:
    t = chain(2.0, depth=12, frozen=6)
    [f] = exploding.rule(t)
    assert f.layers and all(int(name[2:]) >= 6 for name in f.layers)
    assert f.evidence["depth"]["first_to_last"] == pytest.approx(2.0**5)
