"""dying-relu: ReLUs pushed into the negative region die for good; LeakyReLU, PReLU and ELU
units keep a gradient there and come back.

Source: the seed article (dying ReLU; LReLU, PReLU, ELU as remedies); Maas et al. 2013 (leaky
ReLU), He et al. 2015 (PReLU), Clevert et al. 2016 (ELU). A ReLU whose input is negative for
every sample has gradient exactly 0 for every sample: nothing can move it back, and it never
learns again. The leaky variants have a non-zero slope there.

On digits, an MLP (3 hidden layers of 128, He init) starts with every hidden bias at −2.5, so a
large part of the units are negative on every training sample, and is trained with Adam. We
measure, before and after, the fraction of hidden units whose pre-activation is ≤ 0 on every
training sample, and read the monitor's ``in_dead_frac`` (per batch) from the Trace.

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
from gradientflow.lab.figures import plot_loss_curves, save_figure
from gradientflow.lab.record import ExperimentResult, check, sig
from gradientflow.lab.training import finding_kinds, fit

CLAIM = (
    "ReLUs whose input is negative for every sample get no gradient and stay dead; LeakyReLU, "
    "PReLU and ELU keep a gradient there, revive, and the net learns."
)
SOURCE = "Seed article; Maas et al. 2013 (LReLU); He et al. 2015 (PReLU); Clevert et al. 2016"
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu")
BIAS, LR, WIDTH, DEPTH = -2.5, 0.003, 128, 4


@torch.no_grad()
def negative_everywhere(net: nn.Sequential, x: torch.Tensor) -> list[float]:
    """Per hidden layer: fraction of units whose pre-activation is ≤ 0 on every row of ``x``.

    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> len(negative_everywhere(net, torch.randn(4, 2)))
    1
    """
    fractions: list[float] = []
    h = x
    last = [m for m in net if isinstance(m, nn.Linear)][-1]
    for module in net:
        h = module(h)
        if isinstance(module, nn.Linear) and module is not last:
            fractions.append(float((h <= 0).all(0).float().mean()))
    return fractions


def _one(act: str, epochs: int, data: datasets.Dataset) -> dict[str, Any]:
    net = models.mlp(64, 10, width=WIDTH, depth=DEPTH, activation=act, init="he", bias=BIAS, seed=0)
    before = negative_everywhere(net, data.x_train)
    result = fit(net, data, epochs=epochs, lr=LR, optimizer="adam", seed=0, watch=True)
    monitor_dead = result.trace.last_measured("in_dead_frac")
    return {
        "before": before,
        "after": negative_everywhere(net, data.x_train),
        "monitor_dead_max": float(np.nanmax(monitor_dead)),
        "test_acc": result.test_acc,
        "losses": result.losses,
        "findings": finding_kinds(result.trace),
    }


def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
    """Train the four activations from the same negative-bias start; compare."""
    epochs = 15  # longer runs let some dead units revive as the layers below shift
    data = datasets.digits()
    runs = {act: _one(act, epochs, data) for act in ACTIVATIONS}
    relu = runs["relu"]
    checks: list[dict[str, Any]] = []
    check(
        checks,
        "relu: ≥ 25% of some hidden layer's units still dead after training "
        "(zero on every training sample)",
        max(relu["after"]) >= 0.25,
    )
    check(
        checks,
        "relu: the monitor's in_dead_frac shows it (≥ 0.2 in some layer)",
        relu["monitor_dead_max"] >= 0.2,
    )
    check(
        checks,
        "diagnose(): 'dead_units' for relu, not for leaky_relu/prelu/elu",
        "dead_units" in relu["findings"]
        and all("dead_units" not in runs[a]["findings"] for a in ACTIVATIONS[1:]),
    )
    for act in ACTIVATIONS[1:]:
        r = runs[act]
        check(
            checks,
            f"{act}: monitor's dead fraction 0 and ≤ 10% of units left all-negative",
            r["monitor_dead_max"] == 0.0 and max(r["after"]) <= 0.1,
        )
        check(
            checks,
            f"{act}: test accuracy ≥ 0.8 and ≥ relu's + 0.3",
            r["test_acc"] >= 0.8 and r["test_acc"] >= relu["test_acc"] + 0.3,
        )
    figures = save_figure(
        out_dir,
        "dying-relu",
        lambda ax: plot_loss_curves(
            ax,
            {a: r["losses"] for a, r in runs.items()},
            window=20,
            title=f"hidden biases start at {BIAS}",
        ),
    )
    return ExperimentResult(
        name="dying-relu",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "data": "digits",
            "hidden_layers": DEPTH - 1,
            "width": WIDTH,
            "init": "He",
            "hidden_bias_at_init": BIAS,
            "optimizer": f"Adam lr {LR}, batch 64",
            "epochs": epochs,
            "leaky_relu_slope": 0.01,
        },
        measured={
            "all_negative_before": {a: [sig(v, 2) for v in r["before"]] for a, r in runs.items()},
            "all_negative_after": {a: [sig(v, 2) for v in r["after"]] for a, r in runs.items()},
            "monitor_in_dead_frac_max": {a: sig(r["monitor_dead_max"], 2) for a, r in runs.items()},
            "test_acc": {a: round(r["test_acc"], 3) for a, r in runs.items()},
            "diagnose_findings": {a: r["findings"] for a, r in runs.items()},
        },
        criterion="relu: ≥ 25% of a hidden layer dead after training, the monitor shows it, "
        "diagnosed 'dead_units'; leaky/PReLU/ELU: monitor dead fraction 0, ≤ 10% all-negative, "
        "accuracy ≥ 0.8, not diagnosed 'dead_units'",
        passed=all(c["passed"] for c in checks),
        checks=checks,
        figures=figures,
        quick=quick,
    )
