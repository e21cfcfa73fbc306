"""The rules on real trainings (digits, MNIST-1D): each pathology found, healthy nets silent.

Each training is a few dozen steps under ``gradientflow.watch`` (default schedule: gradients
every step, full statistics every 50th).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from torch import nn

from gradientflow.diagnosis import Diagnosis, diagnose
from gradientflow.recipe import check_recipe, run_recipe
from gradientflow.trace import Trace
from tests.diagnosis.scenarios import (
    relu_dead,
    relu_he_bn,
    relu_lr,
    relu_scaled,
    residual_cnn,
    sigmoid_demo,
    sigmoid_frozen_lower,
    tanh_small_init,
    transformer,
)
from tests.realtrain import SEEDS, perturbed


def train(make: Callable[[], dict[str, Any]], steps: int) -> Trace:
    recipe = check_recipe(make(), "test")
    return run_recipe(recipe, steps, progress=False).trace


def kinds(d: Diagnosis, at_least: str = "warning") -> dict[str, str]:
    return {f.kind: f.severity for f in d.at_least(at_least)}


def test_demo_vanishing_is_critical_within_20_steps() -> None:
    trace = train(sigmoid_demo, 20)
    [f] = diagnose(trace.head(20)).of_kind("vanishing")
    ev = f.evidence
    assert f.severity == "critical" and ev["metric"] == "out_grad_norm"
    # SCIENCE.md: sigmoid at default init, per-layer norm factor sqrt(chi_1) = 0.14
    assert 0.10 < ev["per_layer_gain"] < 0.18
    assert ev["first_to_last"] < 1e-12 and ev["n_layers"] == 20
    assert ev["sign1_ratio"] < 1e-6  # sign 1: lower layers barely move
    assert f.remedies[0] == "swap_activation:relu"


def test_demo_step0_ratio_matches_plain_autograd() -> None:
    recipe = sigmoid_demo()
    model: nn.Sequential = recipe["model"]
    x, y = next(iter(recipe["batches"]))
    # reference: dL/ds of the first and last Linear, by retain_grad on a copy of the model
    ref = type(model)(*[m for m in model])
    outs = []
    h = x
    for m in ref:
        h = m(h)
        if isinstance(m, nn.Linear):
            h.retain_grad()
            outs.append(h)
    nn.functional.cross_entropy(h, y).backward()
    expected = float(outs[0].grad.norm() / outs[-1].grad.norm())
    model.zero_grad()
    recipe["batches"] = iter([(x, y)])
    trace = run_recipe(check_recipe(recipe), 1, progress=False).trace
    [f] = diagnose(trace, rules=["vanishing"]).findings
    assert f.evidence["first_to_last"] == pytest.approx(expected, rel=1e-6)


def test_tanh_tiny_init_vanishes_on_mnist1d() -> None:
    d = diagnose(train(tanh_small_init, 30))
    assert "vanishing" in kinds(d)
    [f] = d.of_kind("vanishing")
    assert f.remedies[0] == "reinit:xavier"


def test_relu_weights_times_3_explode() -> None:
    d = diagnose(train(relu_scaled, 20))
    assert "exploding" in kinds(d) and "vanishing" not in kinds(d)
    [f] = d.of_kind("exploding")
    assert f.evidence["depth"]["per_layer_gain"] > 1.1


@pytest.mark.parametrize("functional", [False, True], ids=["nn.ReLU", "F.relu"])
def test_relu_bias_minus_5_dead_units(functional: bool) -> None:
    d = diagnose(train(lambda: relu_dead(functional), 20))
    assert kinds(d).get("dead_units") == "critical"
    [f] = d.of_kind("dead_units")
    assert f.evidence["worst_fraction"] >= 0.9


def test_lr_10_blows_up() -> None:
    d = diagnose(train(lambda: relu_lr(10.0), 30))
    assert {"nonfinite", "exploding"} & set(kinds(d))


def test_lr_1e7_stagnates() -> None:
    d = diagnose(train(lambda: relu_lr(1e-7), 40))
    [f] = d.of_kind("stagnation")
    assert f.severity in ("warning", "critical") and f.remedies[0] == "raise_lr"


@pytest.mark.parametrize(
    ("make", "steps"),
    [
        (relu_he_bn, 60),
        (residual_cnn, 40),
        pytest.param(transformer, 40, marks=pytest.mark.slow),
    ],
    ids=["relu-he-batchnorm", "residual-cnn", "transformer"],
)
@pytest.mark.training
@pytest.mark.parametrize("seed", SEEDS)
def test_healthy_nets_have_no_warning(
    make: Callable[..., dict[str, Any]], steps: int, seed: int
) -> None:
    recipe = make(seed=seed)
    perturbed(recipe["model"])
    d = diagnose(train(lambda: recipe, steps))
    assert kinds(d) == {}, (seed, [f.message for f in d.findings])


def test_frozen_lower_half_is_never_blamed() -> None:
    trace = train(sigmoid_frozen_lower, 20)
    frozen = {x.name for x in trace.layers if not x.trainable}
    assert len(frozen) == 10
    d = diagnose(trace)
    assert d.findings
    for f in d.findings:
        assert not frozen & set(f.layers), (f.kind, f.layers)
    [f] = d.of_kind("vanishing")
    assert f.evidence["first_layer"] not in frozen and f.evidence["n_layers"] == 10
