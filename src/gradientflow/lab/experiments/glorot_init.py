"""glorot-init: with the standard init, back-propagated gradients shrink toward the input.

Source: Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward
neural networks", §4.2–4.3 and Fig. 7: 5 hidden tanh layers of 1000 units. With the standard
init U(±1/√n) (n·Var[W] = 1/3, PyTorch's default) the variance of the back-propagated gradient
∂C/∂s falls by about a factor 3 per layer toward the input, while the *weight* gradients stay
similar across layers; the normalized init Var[W] = 2/(n_in + n_out) keeps both level.

We build that net (input: MNIST-1D, 40 features; cross-entropy on the real labels), measure
Var[∂C/∂s] at the pre-activation of each hidden layer at init, and compare layer 1 with layer 5.
Criterion: ratio < 0.05 with the standard init; within [0.5, 2] with the normalized init.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check, control, sig, verdict
from gradientflow.lab.training import gradient_profile

CLAIM = (
    "With the standard init, the gradient back-propagated to a tanh net's lower layers "
    "vanishes; Glorot's normalized init keeps it level."
)
SOURCE = "Glorot & Bengio 2010, Understanding the difficulty of training deep FF nets (Fig. 7)"
HIDDEN = 5
N_SAMPLES = 500
NEGATIVE_CONTROL = "the standard init under the normalized init's criterion (ratio in [0.5, 2])"


def _profile(init: str, width: int, seeds: range) -> dict[str, list[float]]:
    """Mean over seeds of per-layer Var[∂C/∂s] and weight-gradient norm (hidden layers)."""
    data = datasets.mnist1d()
    x, y = data.x_train[:N_SAMPLES], data.y_train[:N_SAMPLES]
    var, wgrad = [], []
    for seed in seeds:
        net = models.mlp(
            40, 10, width=width, depth=HIDDEN + 1, activation="tanh", init=init, bias=0.0, seed=seed
        )
        norms, w_norms = gradient_profile(net, x, lambda o: nn.functional.cross_entropy(o, y))
        var.append([n**2 / (len(x) * width) for n in norms[:HIDDEN]])
        wgrad.append(w_norms[:HIDDEN])
    return {"var": list(np.mean(var, 0)), "wgrad": list(np.mean(wgrad, 0))}


def level(label: str, ratio: float) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    check(checks, f"{label}: Var[∂C/∂s] layer 1 / layer 5 in [0.5, 2]", 0.5 <= ratio <= 2.0)
    return checks


def run(quick: bool = False, out_dir: Path | None = None, seed: int = 0) -> ExperimentResult:
    """Var[∂C/∂s] layer 1 / layer 5 at init, standard vs normalized init."""
    torch.manual_seed(seed)
    width, n = (1000, 1) if quick else (1000, 5)
    seeds = range(seed * n, seed * n + n)
    std = _profile("default", width, seeds)
    norm = _profile("xavier", width, seeds)
    r_std = std["var"][0] / std["var"][-1]
    r_norm = norm["var"][0] / norm["var"][-1]
    w_hidden = std["wgrad"][1:]
    w_spread = max(w_hidden) / min(w_hidden)
    checks: list[dict[str, Any]] = []
    check(checks, "standard init: Var[∂C/∂s] layer 1 / layer 5 < 0.05", r_std < 0.05)
    checks += level("normalized init", r_norm)
    check(
        checks,
        "standard init: weight-gradient norms of layers 2–5 within a factor 2",
        w_spread < 2.0,
    )
    negative = control(NEGATIVE_CONTROL, level("standard init", r_std))
    figures = save_figure(out_dir, "glorot-init", lambda ax: _plot(ax, std["var"], norm["var"]))
    return ExperimentResult(
        name="glorot-init",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "data": f"MNIST-1D, first {N_SAMPLES} training samples",
            "hidden_layers": HIDDEN,
            "width": width,
            "activation": "tanh",
            "init_seeds": list(seeds),
            "standard": "U(±1/√fan_in), n·Var[W] = 1/3",
            "normalized": "Var = 2/(n_in+n_out)",
        },
        measured={
            "standard_var_ratio_l1_l5": sig(r_std),
            "normalized_var_ratio_l1_l5": sig(r_norm),
            "standard_norm_ratio_l1_l5": sig(r_std**0.5),
            "normalized_norm_ratio_l1_l5": sig(r_norm**0.5),
            "standard_var_by_layer": [sig(v) for v in std["var"]],
            "normalized_var_by_layer": [sig(v) for v in norm["var"]],
            "standard_weight_grad_spread_l2_l5": sig(w_spread),
        },
        paper={
            "per_layer_var_factor_standard": "≈ 1/3 (n·Var[W] = 1/3)",
            "table1_mnist_test_error_pct": {"sigmoid": 2.21, "tanh_normalized": 1.64},
        },
        criterion="Var[∂C/∂s] layer 1 / layer 5 < 0.05 (standard) and in [0.5, 2] (normalized)",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        seed=seed,
        figures=figures,
        quick=quick,
    )


def _plot(ax: Any, std: list[float], norm: list[float]) -> None:
    layers = np.arange(1, len(std) + 1)
    ax.semilogy(layers, std, "o-", label="standard init U(±1/√n)")
    ax.semilogy(layers, norm, "s-", label="normalized (Xavier) init")
    ax.set_xlabel("hidden layer (input → output)")
    ax.set_ylabel("Var[∂C/∂s] at init")
    ax.set_title("back-propagated gradients, 5×1000 tanh")
    ax.legend()
