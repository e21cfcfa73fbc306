"""depth-sigmoid: a deep sigmoid MLP's gradients vanish toward the input; the right
activation *with its init* fixes it.

Source: the seed article (the vanishing gradient problem; ReLU/SELU as remedies), Glorot &
Bengio 2010, He et al. 2015 (He init), Klambauer et al. 2017 (SELU + LeCun init). SCIENCE.md's
own measurement on this exact setup (digits, 20 layers of width 64, SGD momentum 0.9, 20
epochs, batch 64): sigmoid default init 0.10 test accuracy, gradient ratio first/last layer
1e-18; ReLU+He 0.94 (ratio 1.0); SELU+LeCun 0.97 (1.2); tanh+Xavier 0.97 (1.8).

The baseline is built with PyTorch's default init; the three remedies are made from it with
:func:`gradientflow.remedies.activation.swap_activation` (which re-initialises the layers with
the activation's companion init), and every run is watched by :func:`gradientflow.watch`: the
gradient ratio is read from the Trace at step 0.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import plot_loss_curves, save_figure
from gradientflow.lab.record import ExperimentResult, check, sig
from gradientflow.lab.training import finding_kinds, fit, step0_ratio

CLAIM = (
    "In a deep sigmoid net the chain rule multiplies factors ≤ 1/4: the lowest layers get "
    "almost no gradient and the net does not learn; ReLU+He, SELU+LeCun and tanh+Xavier do."
)
SOURCE = "Seed article; Glorot & Bengio 2010; He et al. 2015; Klambauer et al. 2017"
DEPTH, WIDTH = 20, 64
#: variant -> (activation, learning rate); SCIENCE.md's recipe
VARIANTS: dict[str, tuple[str, float]] = {
    "sigmoid (default init)": ("sigmoid", 0.05),
    "relu + He": ("relu", 0.003),
    "selu + LeCun": ("selu", 0.003),
    "tanh + Xavier": ("tanh", 0.01),
}
PAPER = {
    "sigmoid (default init)": 0.10,
    "relu + He": 0.94,
    "selu + LeCun": 0.97,
    "tanh + Xavier": 0.97,
}


def _variant(base: torch.nn.Sequential, activation: str) -> torch.nn.Module:
    from gradientflow.remedies.activation import swap_activation

    if activation == "sigmoid":
        return base
    torch.manual_seed(1)
    return swap_activation(base, activation)


def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
    """Train the 20-layer sigmoid MLP and its three remedies on digits; compare."""
    epochs = 10 if quick else 20
    min_acc = 0.6 if quick else 0.9
    data = datasets.digits()
    base = models.mlp(64, 10, width=WIDTH, depth=DEPTH, activation="sigmoid", seed=0)
    ratio: dict[str, float] = {}
    acc: dict[str, float] = {}
    curves: dict[str, list[float]] = {}
    findings: dict[str, list[str]] = {}
    for label, (act, lr) in VARIANTS.items():
        net = _variant(base, act)
        result = fit(
            net, data, epochs=epochs, lr=lr, momentum=0.9, batch_size=64, seed=0, watch=True
        )
        ratio[label] = step0_ratio(result.trace)
        acc[label] = result.test_acc
        curves[label] = result.losses
        findings[label] = finding_kinds(result.trace)
    checks: list[dict[str, Any]] = []
    sig_label = "sigmoid (default init)"
    check(
        checks, "sigmoid: gradient ratio first/last layer at step 0 < 1e-6", ratio[sig_label] < 1e-6
    )
    check(checks, "sigmoid: test accuracy ≤ 0.2 (chance is 0.1)", acc[sig_label] <= 0.2)
    check(
        checks,
        "diagnose(): 'vanishing' for sigmoid, not for any remedy",
        "vanishing" in findings[sig_label]
        and all("vanishing" not in findings[k] for k in list(VARIANTS)[1:]),
    )
    for label in list(VARIANTS)[1:]:
        check(checks, f"{label}: gradient ratio in [0.1, 10]", 0.1 <= ratio[label] <= 10)
        check(checks, f"{label}: test accuracy ≥ {min_acc}", acc[label] >= min_acc)
    figures = save_figure(
        out_dir,
        "depth-sigmoid",
        lambda ax: plot_loss_curves(ax, curves, window=10, title="20-layer MLP on digits"),
    )
    return ExperimentResult(
        name="depth-sigmoid",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "data": "digits",
            "depth": DEPTH,
            "width": WIDTH,
            "epochs": epochs,
            "optimizer": "SGD momentum 0.9, batch 64",
            "learning_rates": {k: v[1] for k, v in VARIANTS.items()},
            "remedies": "gradientflow.remedies swap_activation (companion init)",
        },
        measured={
            "test_acc": {k: round(v, 3) for k, v in acc.items()},
            "grad_ratio_first_last_step0": {k: sig(v, 2) for k, v in ratio.items()},
            "diagnose_findings": findings,
        },
        paper={
            "science_md_test_acc_20_epochs": PAPER,
            "science_md_grad_ratio": {
                "sigmoid (default init)": 1e-18,
                "relu + He": 1.0,
                "selu + LeCun": 1.2,
                "tanh + Xavier": 1.8,
            },
        },
        criterion=f"sigmoid: ratio < 1e-6, accuracy ≤ 0.2, diagnosed 'vanishing'; each remedy: "
        f"ratio in [0.1, 10], accuracy ≥ {min_acc}, not diagnosed 'vanishing'",
        passed=all(c["passed"] for c in checks),
        checks=checks,
        figures=figures,
        quick=quick,
    )
