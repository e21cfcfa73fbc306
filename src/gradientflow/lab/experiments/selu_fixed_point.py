"""selu-fixed-point: SELU with LeCun-normal init keeps activations at mean 0, variance 1.

Source: Klambauer et al. 2017, "Self-normalizing neural networks": with α = 1.6733,
λ = 1.0507 and Var(w) = 1/n, the map of (mean, variance) through a SELU layer has the stable
fixed point (0, 1). SCIENCE.md: 64 layers at init, |mean| < 0.1 and variance in [0.8, 1.5] at
every layer past 10. A ReLU net at σ_w² = 1 halves the second moment each layer instead, so its
signal (and its back-propagated gradient) dies away geometrically.

We push the standardised digits through 64 layers of width 256 and record each layer's mean
and variance (over all units and samples).

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check, control, sig, verdict

CLAIM = (
    "SELU with LeCun-normal init is self-normalising: activations keep mean ≈ 0, variance ≈ 1 "
    "through 64 layers, where ReLU at σ_w² = 1 decays geometrically."
)
SOURCE = "Klambauer et al. 2017, Self-Normalizing Neural Networks (fixed point (0, 1))"
DEPTH = 64
NEGATIVE_CONTROL = "SELU with PyTorch's default init (σ_w² = 1/3) under the same criterion"


@torch.no_grad()
def layer_moments(net: torch.nn.Sequential, x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Mean and variance of every activation module's output, in depth order.

    >>> net = models.mlp(4, 2, width=8, depth=3, activation="selu", init="lecun")
    >>> len(layer_moments(net, torch.randn(10, 4))[0])
    2
    """
    means: list[float] = []
    variances: list[float] = []
    h = x
    for module in net:
        h = module(h)
        if not isinstance(module, torch.nn.Linear):
            means.append(float(h.mean()))
            variances.append(float(h.var()))
    return means, variances


def self_normalised(label: str, means: list[float], variances: list[float]) -> list[dict[str, Any]]:
    """The fixed-point criterion on the layers past the 10th."""
    past = slice(10, None)
    checks: list[dict[str, Any]] = []
    check(
        checks,
        f"{label}: |mean| < 0.1 at every layer past 10",
        max(abs(m) for m in means[past]) < 0.1,
    )
    check(
        checks,
        f"{label}: variance in [0.8, 1.5] at every layer past 10",
        min(variances[past]) >= 0.8 and max(variances[past]) <= 1.5,
    )
    return checks


def run(quick: bool = False, out_dir: Path | None = None, seed: int = 0) -> ExperimentResult:
    """Moments through 64 SELU (LeCun) vs 64 ReLU (σ_w² = 1) layers on the digits."""
    width = 256 if quick else 512
    data = datasets.digits()
    x = data.x_train
    selu = models.mlp(
        64, 10, width=width, depth=DEPTH + 1, activation="selu", init="lecun", bias=0.0, seed=seed
    )
    relu = models.mlp(
        64, 10, width=width, depth=DEPTH + 1, activation="relu", init=1.0, bias=0.0, seed=seed
    )
    default = models.mlp(
        64, 10, width=width, depth=DEPTH + 1, activation="selu", init="default", seed=seed
    )
    s_mean, s_var = layer_moments(selu, x)
    _, r_var = layer_moments(relu, x)
    past = slice(10, None)
    worst_mean = max(abs(m) for m in s_mean[past])
    var_lo, var_hi = min(s_var[past]), max(s_var[past])
    checks: list[dict[str, Any]] = []
    checks += self_normalised("SELU", s_mean, s_var)
    check(
        checks,
        "ReLU σ_w²=1: variance at layer 64 below 1e-6 of layer 1's",
        r_var[-1] < 1e-6 * r_var[0],
    )
    d_mean, d_var = layer_moments(default, x)
    negative = control(NEGATIVE_CONTROL, self_normalised("SELU, default init", d_mean, d_var))
    figures = save_figure(out_dir, "selu-fixed-point", lambda ax: _plot(ax, s_var, r_var))
    return ExperimentResult(
        name="selu-fixed-point",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "data": "digits (standardised), 1348 samples",
            "depth": DEPTH,
            "width": width,
            "selu_init": "LeCun normal N(0, 1/fan_in), bias 0",
            "relu_init": "N(0, 1/fan_in) (σ_w² = 1), bias 0",
        },
        measured={
            "selu_max_abs_mean_past_10": sig(worst_mean),
            "selu_var_range_past_10": [sig(var_lo), sig(var_hi)],
            "selu_var_layer_64": sig(s_var[-1]),
            "relu_var_layer_1": sig(r_var[0]),
            "relu_var_layer_64": sig(r_var[-1]),
            "selu_default_init_var_layer_64": sig(d_var[-1]),
            "selu_var_by_layer": [sig(v) for v in s_var[::8]],
            "relu_var_by_layer": [sig(v) for v in r_var[::8]],
        },
        paper={"selu_fixed_point": "(mean 0, variance 1)", "alpha": 1.6733, "lambda": 1.0507},
        criterion="SELU: |mean| < 0.1 and variance in [0.8, 1.5] past layer 10; ReLU at σ_w²=1 "
        "loses > 6 decades of variance over 64 layers",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        seed=seed,
        figures=figures,
        quick=quick,
    )


def _plot(ax: Any, s_var: list[float], r_var: list[float]) -> None:
    layers = np.arange(1, len(s_var) + 1)
    ax.semilogy(layers, s_var, label="SELU, LeCun init")
    ax.semilogy(layers, r_var, label="ReLU, σ_w² = 1")
    ax.axhspan(0.8, 1.5, color="green", alpha=0.1, label="[0.8, 1.5]")
    ax.set_xlabel("layer")
    ax.set_ylabel("activation variance")
    ax.set_title("SELU's fixed point at init")
    ax.legend()
