"""weights_to_zero (sign 2) and stagnation (sign 3)."""

from __future__ import annotations

import numpy as np
import pytest

from gradientflow.diagnosis.rules import stagnation, weights_to_zero
from gradientflow.trace import Trace
from tests.diagnosis.traces import chain, healthy, layers


def _weights(
    norms: list[list[float]], zero: list[list[float]] | None = None, frozen: int = 0
) -> Trace:
    steps = np.linspace(0, 100, len(norms)).astype(int)
    cols = {"weight_norm": norms}
    if zero is not None:
        cols["zero_frac"] = zero
    return Trace.build(layers(len(norms[0]), frozen=frozen), steps=steps, **cols)


def test_weight_norm_collapse() -> None:
    [f] = weights_to_zero.rule(_weights([[5.0, 5.0, 5.0], [2.0, 5.0, 5.1], [0.3, 5.0, 5.2]]))
    assert f.severity == "warning" and f.layers == ["fc0"]
    assert f.evidence["layers"]["fc0"]["norm_ratio"] == pytest.approx(0.06)
    assert "Sign 2" in f.message


def test_near_zero_fraction_rising() -> None:
    norms = [[5.0, 5.0]] * 3
    [f] = weights_to_zero.rule(_weights(norms, [[0.05, 0.05], [0.5, 0.05], [0.95, 0.06]]))
    assert f.severity == "critical" and f.layers == ["fc0"]


def test_weights_silent_when_stable_short_or_frozen() -> None:
    assert weights_to_zero.rule(healthy()) == []
    t = Trace.build(layers(2), steps=[0, 5], weight_norm=[[5.0, 5.0], [0.01, 5.0]])
    assert weights_to_zero.rule(t) == []  # 5 steps say nothing
    assert weights_to_zero.rule(_weights([[5.0, 5.0], [0.01, 5.0]], frozen=1)) == []


def test_flat_loss_is_stagnation_and_tiny_updates_blame_the_lr() -> None:
    n = 120
    loss = 2.30 + 0.01 * np.random.default_rng(0).standard_normal(n)
    t = chain(1.0, depth=5, steps=n, loss=loss, rel_update=np.full(5, 1e-8))
    [f] = stagnation.rule(t)
    assert f.severity == "critical" and abs(f.evidence["total_improvement"]) < 0.01
    assert f.remedies == ["raise_lr"] and "learning rate" in f.message
    assert "Sign 3" in f.message


def test_plateau_while_high_is_a_warning_pointing_at_the_signal() -> None:
    n = 60
    loss = np.concatenate([np.linspace(2.3, 2.0, 10), np.full(n - 10, 2.0)])
    rel = np.array([1e-9, 1e-7, 1e-3, 1e-2, 1e-2])  # the top layers move: not the lr
    [f] = stagnation.rule(chain(0.2, depth=5, steps=n, loss=loss, rel_update=rel))
    assert f.severity == "warning" and f.remedies[-1] == "raise_lr"
    # the start is the median of the first 5 losses (2.2333), the end that of the last 12
    start = float(np.median(np.linspace(2.3, 2.0, 10)[:5]))
    assert f.evidence["total_improvement"] == pytest.approx((start - 2.0) / start)


def test_stagnation_without_measured_updates_claims_nothing_about_them() -> None:
    """rel_update never measured: evidence null (not NaN), no "weights do move" claim."""
    import json

    t = Trace.build(
        ["fc0", "fc1", "fc2"], steps=range(40), grad_norm=[[1.0] * 3] * 40, loss=[2.302585] * 40
    )
    [f] = stagnation.rule(t)
    assert f.evidence["largest_rel_update"] is None
    assert json.loads(json.dumps(f.to_dict()))["evidence"]["largest_rel_update"] is None
    assert "nan" not in f.message and "do move" not in f.message
    assert "not measured" in f.message and f.remedies[-1] == "raise_lr"


@pytest.mark.parametrize(
    "loss",
    [
        2.3 * np.exp(-np.arange(60) / 20),  # learning
        np.concatenate([np.linspace(2.3, 0.1, 30), np.full(30, 0.1)]),  # converged low
        np.linspace(2.3, 5.0, 60),  # diverging: not stagnation
        np.full(10, 2.3),  # too short to tell
    ],
)
def test_no_stagnation(loss: np.ndarray) -> None:
    t = Trace.build(layers(3), steps=range(len(loss)), loss=loss)
    assert stagnation.rule(t) == []


def test_noise_aware() -> None:
    rng = np.random.default_rng(1)
    noise = 0.15 * rng.standard_normal(40)  # mini-batch noise of an untrained net, about 5%
    flat = Trace.build(layers(3), steps=range(40), loss=3.2 + noise)
    [f] = stagnation.rule(flat)
    assert f.evidence["noise_margin"] > 0.01
    learning = Trace.build(layers(3), steps=range(40), loss=np.linspace(3.2, 2.0, 40) + noise)
    assert stagnation.rule(learning) == []


def test_a_declared_discriminator_settled_at_log_4_is_no_stagnation() -> None:
    # A GAN discriminator at equilibrium: its loss sits at log 4 = 1.386 from the start, the
    # number a binary classifier stuck at chance shows; only the declared role tells them apart.
    rng = np.random.default_rng(2)
    loss = np.log(4) + 0.02 * rng.standard_normal(300)
    undeclared = Trace.build(layers(3), steps=range(300), loss=loss)
    [f] = stagnation.rule(undeclared)
    assert f.severity == "critical" and abs(f.evidence["total_improvement"]) < 0.01
    assert "role='discriminator'" not in f.message  # the hint is for a rising loss
    for role in stagnation.ADVERSARIAL_ROLES:
        declared = Trace.build(layers(3), steps=range(300), loss=loss, meta={"role": role})
        [f] = stagnation.rule(declared)
        assert f.severity == "info" and f.evidence["role"] == role
        assert f"declared role={role!r}" in f.message
    # rising by 8% (beyond the noise, short of the 10% that is divergence): info either way,
    # with the hint how to declare the role when it is undeclared
    rising = np.linspace(1.28, 1.386, 300) + 0.005 * rng.standard_normal(300)
    [f] = stagnation.rule(Trace.build(layers(3), steps=range(300), loss=rising))
    assert f.severity == "info" and f.evidence["total_improvement"] < -0.05
    assert "role='discriminator'" in f.message
