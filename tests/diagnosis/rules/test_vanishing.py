"""The vanishing rule on hand-made traces: the numbers it reports are the chain-rule product."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradientflow.diagnosis.rules import vanishing
from gradientflow.trace import LayerInfo, Trace
from tests.diagnosis.traces import chain, healthy


def test_sigmoid_like_chain_is_critical_with_hand_computed_evidence() -> None:
    # SCIENCE.md: sigmoid at default init, per-layer norm factor sqrt(chi_1) = 0.14
    rel = np.array([1e-12] * 6 + [1e-6] * 8 + [1e-3] * 6)
    [f] = vanishing.rule(chain(0.14, depth=20, rel_update=rel))
    ev = f.evidence
    assert f.kind == "vanishing" and f.severity == "critical"
    assert ev["metric"] == "out_grad_norm"
    assert ev["first_to_last"] == pytest.approx(0.14**19, rel=1e-9)
    assert ev["per_layer_gain"] == pytest.approx(0.14, rel=1e-9)
    # 0.14**3 = 2.7e-3 >= 1e-3 > 0.14**4 = 3.8e-4: four layers below the top
    assert ev["depth_below_1e-3"] == 4 and ev["layer_below_1e-3"] == "fc15"
    assert ev["sign1_ratio"] == pytest.approx(1e-9)
    assert ev["n_layers"] == 20 and ev["first_layer"] == "fc0" and ev["last_layer"] == "fc19"
    # blamed: every layer getting < 1% of the top's gradient (0.14**3 > 1e-2 > 0.14**2 ... )
    assert f.layers == [f"fc{j}" for j in range(20) if 0.14 ** (19 - j) < 1e-2]
    assert "0.14" in f.message and "19 layers" in f.message and "1/4" in f.message
    assert f.remedies[0] == "swap_activation:relu"


def test_reported_within_the_first_20_steps() -> None:
    t = chain(0.14, depth=20, steps=200)
    [f] = vanishing.rule(t.head(20))
    assert f.severity == "critical" and f.evidence["window"] == "steps 0-19"


def test_falls_back_to_weight_gradients() -> None:
    t = chain(0.5, depth=20)
    t.metrics["out_grad_norm"][:] = np.nan
    [f] = vanishing.rule(t)
    assert f.evidence["metric"] == "grad_norm"
    assert f.evidence["first_to_last"] == pytest.approx(0.5**19)


@pytest.mark.parametrize(
    ("gain", "severity"), [(0.6, "critical"), (0.75, "warning"), (0.9, None), (1.0, None)]
)
def test_thresholds(gain: float, severity: str | None) -> None:
    # ratio over 19 layers: 0.6 -> 6e-5, 0.75 -> 4.2e-3, 0.9 -> 0.135
    found = vanishing.rule(chain(gain, depth=20, noise=0.05))
    assert (found[0].severity if found else None) == severity


def test_healthy_is_silent() -> None:
    assert vanishing.rule(healthy()) == []


def test_critical_becomes_warning_when_lower_layers_still_move() -> None:
    # an adaptive optimizer can keep the lower layers moving despite a tiny gradient
    [f] = vanishing.rule(chain(0.3, depth=12, rel_update=np.full(12, 1e-3)))
    assert f.evidence["first_to_last"] < vanishing.CRITICAL_RATIO
    assert f.severity == "warning" and "still change" in f.message


def test_frozen_layers_are_never_blamed() -> None:
    t = chain(0.14, depth=20, frozen=10)
    [f] = vanishing.rule(t)
    assert f.evidence["first_layer"] == "fc10"
    assert f.evidence["first_to_last"] == pytest.approx(0.14**9)
    assert all(int(name[2:]) >= 10 for name in f.layers)


def test_norm_layers_are_left_out_of_the_chain() -> None:
    infos = [LayerInfo("fc0"), LayerInfo("bn0", "BatchNorm1d"), LayerInfo("fc1"), LayerInfo("fc2")]
    g = [[1e-6, 1e3, 1e-3, 1.0]] * 3
    [f] = vanishing.rule(Trace.build(infos, steps=range(3), out_grad_norm=g))
    assert f.evidence["n_layers"] == 3 and "bn0" not in f.evidence["layers_used"]
    assert f.evidence["per_layer_gain"] == pytest.approx(1e-3)


def test_too_short_or_empty_is_silent() -> None:
    assert vanishing.rule(chain(0.01, depth=2)) == []
    assert vanishing.rule(chain(0.14, depth=20, steps=0)) == []


def test_zero_gradient_at_the_bottom() -> None:
    g = [[0.0, 0.0, 0.5, 1.0]] * 4
    [f] = vanishing.rule(Trace.build([f"fc{j}" for j in range(4)], steps=range(4), out_grad_norm=g))
    assert f.severity == "critical" and f.evidence["first_to_last"] == 0.0
    assert "no gradient" in f.message and not math.isnan(f.evidence["per_layer_gain"])
