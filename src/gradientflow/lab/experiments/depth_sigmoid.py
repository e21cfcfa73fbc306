"""depth-sigmoid: a deep sigmoid MLP's gradients vanish toward the input; the right
activation *with its init* fixes it.

Source: the seed article (the vanishing gradient problem; ReLU/SELU as remedies), Glorot &
Bengio 2010, He et al. 2015 (He init), Klambauer et al. 2017 (SELU + LeCun init). SCIENCE.md's
own measurement on this setup (digits, 20 layers of width 64, SGD momentum 0.9, 20
epochs, batch 64, one lr per model): sigmoid default init 0.10 test accuracy, gradient ratio
first/last layer 1e-18; ReLU+He 0.94 (ratio 1.0); SELU+LeCun 0.97 (1.2); tanh+Xavier 0.97 (1.8).

Each model is trained at its own best learning rate from the same sweep
(:data:`~gradientflow.lab.training.LR_SWEEP`, chosen by final training loss, never by the test
set), same epochs, same batches (the short last batch of each epoch dropped). The negative
control: the sigmoid net must fail the criterion the remedies meet.

The baseline is built with PyTorch's default init; the three remedies are made from it with
:func:`gradientflow.remedies.activation.swap_activation` (which re-initialises the layers with
the activation's companion init), and every run is watched by :func:`gradientflow.watch`: the
gradient ratio is read from the Trace at step 0.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import plot_loss_curves, save_figure
from gradientflow.lab.record import ExperimentResult, check, control, sig, verdict
from gradientflow.lab.training import LR_SWEEP, best_lr, finding_kinds, fit, step0_ratio

CLAIM = (
    "In a deep sigmoid net the chain rule multiplies factors ≤ 1/4: the lowest layers get "
    "almost no gradient and the net does not learn; ReLU+He, SELU+LeCun and tanh+Xavier do."
)
SOURCE = "Seed article; Glorot & Bengio 2010; He et al. 2015; Klambauer et al. 2017"
DEPTH, WIDTH = 20, 64
#: variant -> activation; each trained at its own best lr from :data:`LR_SWEEP`
VARIANTS: dict[str, str] = {
    "sigmoid (default init)": "sigmoid",
    "relu + He": "relu",
    "selu + LeCun": "selu",
    "tanh + Xavier": "tanh",
}
PAPER = {
    "sigmoid (default init)": 0.10,
    "relu + He": 0.94,
    "selu + LeCun": 0.97,
    "tanh + Xavier": 0.97,
}
SIGMOID = "sigmoid (default init)"
NEGATIVE_CONTROL = "the sigmoid net (at its best lr) under the remedies' criterion"


def _variant(activation: str, seed: int) -> torch.nn.Module:
    from gradientflow.remedies.activation import swap_activation

    base = models.mlp(64, 10, width=WIDTH, depth=DEPTH, activation="sigmoid", seed=seed)
    if activation == "sigmoid":
        return base
    torch.manual_seed(1000 + seed)
    return swap_activation(base, activation)


def remedy_checks(label: str, ratio: float, acc: float, kinds: list[str], min_acc: float) -> list:
    """The criterion a working net meets: gradient level at step 0, it learns, no 'vanishing'."""
    checks: list[dict[str, Any]] = []
    check(checks, f"{label}: gradient ratio first/last at step 0 in [0.1, 10]", 0.1 <= ratio <= 10)
    check(checks, f"{label}: test accuracy ≥ {min_acc}", acc >= min_acc)
    check(checks, f"{label}: diagnose() reports no 'vanishing'", "vanishing" not in kinds)
    return checks


def run(quick: bool = False, out_dir: Path | None = None, seed: int = 0) -> ExperimentResult:
    """Train the 20-layer sigmoid MLP and its three remedies on digits; compare."""
    epochs = 10 if quick else 20
    min_acc = 0.6 if quick else 0.85
    data = datasets.digits()
    kw: dict[str, Any] = {"epochs": epochs, "momentum": 0.9, "seed": seed, "drop_last": True}
    ratio: dict[str, float] = {}
    acc: dict[str, float] = {}
    lrs: dict[str, float] = {}
    sweep: dict[str, dict[float, float]] = {}
    curves: dict[str, list[float]] = {}
    findings: dict[str, list[str]] = {}
    for label, act in VARIANTS.items():
        make = functools.partial(_variant, act, seed)
        lrs[label], sweep[label], _ = best_lr(make, data, LR_SWEEP, **kw)
        result = fit(_variant(act, seed), data, lr=lrs[label], watch=True, **kw)
        ratio[label] = step0_ratio(result.trace)
        acc[label] = result.test_acc
        curves[label] = result.losses
        findings[label] = finding_kinds(result.trace)
    checks: list[dict[str, Any]] = []
    check(checks, "sigmoid: gradient ratio first/last at step 0 < 1e-6", ratio[SIGMOID] < 1e-6)
    check(checks, "sigmoid: test accuracy ≤ 0.2 (chance is 0.1)", acc[SIGMOID] <= 0.2)
    check(checks, "sigmoid: diagnose() reports 'vanishing'", "vanishing" in findings[SIGMOID])
    for label in list(VARIANTS)[1:]:
        checks += remedy_checks(label, ratio[label], acc[label], findings[label], min_acc)
    negative = control(
        NEGATIVE_CONTROL,
        remedy_checks(SIGMOID, ratio[SIGMOID], acc[SIGMOID], findings[SIGMOID], min_acc),
    )
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
            "seed": seed,
            "optimizer": "SGD momentum 0.9, batch 64, short last batch dropped",
            "lr_sweep": list(LR_SWEEP),
            "lr_selection": "lowest final training loss, per model",
            "remedies": "gradientflow.remedies swap_activation (companion init)",
        },
        measured={
            "test_acc": {k: round(v, 3) for k, v in acc.items()},
            "best_lr": lrs,
            "sweep_train_loss": {
                k: {str(lr): sig(v) for lr, v in d.items()} for k, d in sweep.items()
            },
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
        criterion=f"each model at its best lr of {list(LR_SWEEP)}: sigmoid ratio < 1e-6, accuracy "
        f"≤ 0.2, diagnosed 'vanishing'; each remedy: ratio in [0.1, 10], accuracy ≥ {min_acc}, "
        "not diagnosed 'vanishing'",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        seed=seed,
        figures=figures,
        quick=quick,
    )
