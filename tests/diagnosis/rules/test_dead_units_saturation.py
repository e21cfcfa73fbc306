"""dead_units and saturation: fractions of the activations feeding each layer."""

from __future__ import annotations

import numpy as np
import pytest

from gradientflow.diagnosis.rules import dead_units, saturation
from gradientflow.trace import LayerInfo, Trace
from tests.diagnosis.traces import healthy


def _trace(act: str | None, frac: list[float], metric: str, frozen: int = -1) -> Trace:
    infos = [
        LayerInfo(f"fc{j}", input_activation=None if j == 0 else act, trainable=j != frozen)
        for j in range(len(frac))
    ]
    return Trace.build(infos, steps=range(5), **{metric: np.tile(frac, (5, 1))})


@pytest.mark.parametrize(("frac", "severity"), [(0.97, "critical"), (0.6, "warning"), (0.2, None)])
def test_dead_units_thresholds(frac: float, severity: str | None) -> None:
    found = dead_units.rule(_trace("relu", [0.0, 0.0, frac, 0.0], "in_dead_frac"))
    assert (found[0].severity if found else None) == severity
    if found:
        assert found[0].layers == ["fc2"] and found[0].evidence["worst_fraction"] == frac
        assert found[0].remedies[0] == "swap_activation:leaky_relu"


def test_dead_units_whole_layer() -> None:
    [f] = dead_units.rule(_trace("relu", [0.0, 1.0, 1.0], "in_dead_frac"))
    assert f.layers == ["fc1", "fc2"] and "receive no signal at all" in f.message


def test_dead_units_ignore_non_relu_inputs_and_frozen_layers() -> None:
    # digits has pixels that are 0 in every image: the first layer's input is not a ReLU
    assert dead_units.rule(_trace("relu", [0.9, 0.0, 0.0], "in_dead_frac")) == []
    assert dead_units.rule(_trace("sigmoid", [0.0, 0.9, 0.9], "in_dead_frac")) == []
    [f] = dead_units.rule(_trace("relu", [0.0, 0.95, 0.95], "in_dead_frac", frozen=1))
    assert f.layers == ["fc2"]
    assert dead_units.rule(healthy()) == []


@pytest.mark.parametrize(
    ("act", "frac", "severity"),
    [
        ("sigmoid", 0.95, "critical"),
        ("tanh", 0.7, "warning"),
        ("sigmoid", 0.3, None),
        ("relu", 0.95, None),
    ],
)
def test_saturation(act: str, frac: float, severity: str | None) -> None:
    found = saturation.rule(_trace(act, [0.0, 0.1, frac], "in_sat_frac"))
    assert (found[0].severity if found else None) == severity
    if found:
        assert found[0].layers == ["fc2"] and act in found[0].message
        assert found[0].evidence["saturated_fraction"]["fc1"] == pytest.approx(0.1)


def test_saturation_healthy_and_frozen() -> None:
    assert saturation.rule(healthy()) == []
    assert saturation.rule(_trace("sigmoid", [0.0, 0.1, 0.95], "in_sat_frac", frozen=2)) == []
