"""trainability: deep tanh nets train only up to about 6ξ layers, and preflight predicts ξ.

Source: Schoenholz et al. 2017, "Deep information propagation", Fig. 4 (MNIST/CIFAR-10: a grid
of depth × σ_w² for tanh, trainable cells below the line 6ξ). In small: tanh MLPs of width 64
on scikit-learn's digits, σ_b² = 0.05, weights N(0, σ_w²/fan_in), plain SGD (momentum 0.9) for
a fixed budget. Each cell's net is first shown to :func:`gradientflow.preflight.preflight`,
whose ``max_trainable_depth`` (6ξ, from σ_w² and σ_b² read off the drawn weights) says
"trainable" when the depth is under it. The paper's question is whether a net can be trained
at all, so every cell is trained from the same init at each learning rate of one small sweep
(:data:`LRS`) and keeps the one with the best *training* accuracy (the test set plays no part
in the choice). A cell *trains* when its test accuracy at that learning rate reaches 50%
(chance is 10%).

Criterion: preflight's verdict and the training agree on at least 85% of the cells. Negative
control: the majority-class guess (every cell trainable, or every cell not, whichever agrees
more) under the same criterion — a grid that this guess fits would not test the prediction.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradientflow.lab import datasets
from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check, control, sig, verdict
from gradientflow.preflight import preflight, theory

CLAIM = (
    "Mean-field theory predicts, before training, how deep a net can be and still train: "
    "about 6ξ layers, with ξ = -1/ln χ₁ read from the activation and the init."
)
SOURCE = "Schoenholz et al. 2017 (deep information propagation), Fig. 4, in small"
SIGMA_B2 = 0.05
WIDTH = 64
TRAINS = 0.5  # test accuracy that counts as trained (chance: 0.1)
AGREEMENT = 0.85
#: the learning-rate sweep every cell is trained with (SGD, momentum 0.9): the lab's first
#: single rate (1e-2) and two half-decades below it, where a deep net near the critical point
#: still takes stable steps
LRS = (1e-3, 3e-3, 1e-2)
NEGATIVE_CONTROL = "the majority-class guess (all trainable or all not) under the same criterion"


def agrees(label: str, agreement: float) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    check(
        checks,
        f"{label}: agrees with the training on ≥ {AGREEMENT:.0%} of cells",
        agreement >= AGREEMENT,
    )
    return checks


def build(depth: int, sigma_w2: float, seed: int) -> nn.Sequential:
    """A tanh MLP of ``depth`` Linear layers at the chosen init (64 in, 10 out)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    sizes = [64] + [WIDTH] * (depth - 1) + [10]
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(n_in, n_out)
        nn.init.normal_(lin.weight, 0.0, math.sqrt(sigma_w2 / n_in))
        nn.init.normal_(lin.bias, 0.0, math.sqrt(SIGMA_B2))
        layers += [lin, nn.Tanh()] if i < depth - 1 else [lin]
    return nn.Sequential(*layers)


def train(
    model: nn.Module, data: datasets.Dataset, steps: int, lr: float, seed: int
) -> tuple[float, float]:
    """Plain SGD with momentum on mini-batches of 64; returns (training, test) accuracy, both
    0 when the loss stops being finite."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        idx = torch.randint(0, data.x_train.shape[0], (64,), generator=gen)
        opt.zero_grad()
        loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
        if not torch.isfinite(loss):
            return 0.0, 0.0
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)  # keeps SGD itself stable
        opt.step()
    return (
        datasets.accuracy(model, data.x_train, data.y_train),
        datasets.accuracy(model, data.x_test, data.y_test),
    )


def best_of_sweep(
    depth: int, sw2: float, data: datasets.Dataset, steps: int, seed: int
) -> tuple[float, float]:
    """The cell's net trained from the same init at every rate of :data:`LRS`; returns the
    learning rate with the best training accuracy (the first on a tie) and its test accuracy."""
    runs = [(lr, *train(build(depth, sw2, seed), data, steps, lr, seed)) for lr in LRS]
    lr, _, test = max(runs, key=lambda r: r[1])
    return lr, test


def _cell(depth: int, sw2: float, data: datasets.Dataset, steps: int, seed: int) -> dict[str, Any]:
    model = build(depth, sw2, seed)
    pf = preflight(model, data.x_train[:128], jacobian=False)
    limit = pf.max_trainable_depth if pf.max_trainable_depth is not None else math.inf
    lr, acc = best_of_sweep(depth, sw2, data, steps, seed)
    return {
        "depth": depth,
        "sigma_w2": sw2,
        "chi1": pf.chi1,
        "six_xi": limit,
        "predicted_trainable": depth <= limit,
        "lr": lr,
        "accuracy": acc,
        "trained": acc >= TRAINS,
    }


def run(quick: bool = False, out_dir: Path | None = None, seed: int = 0) -> ExperimentResult:
    """Train the depth × σ_w² grid and compare with preflight's 6ξ."""
    data = datasets.digits()
    depths = (4, 12, 30, 60) if quick else (4, 8, 16, 32, 48, 64, 96)
    sigma_w2 = (
        (0.4, 1.0, 1.76, 4.0, 12.0) if quick else (0.4, 0.7, 1.0, 1.4, 1.76, 2.5, 4.0, 8.0, 16.0)
    )
    steps = 300 if quick else 1000
    cells = [_cell(d, s, data, steps, seed=seed) for d in depths for s in sigma_w2]
    agree = float(np.mean([c["predicted_trainable"] == c["trained"] for c in cells]))
    trained = float(np.mean([c["trained"] for c in cells]))
    majority = max(trained, 1 - trained)
    checks = agrees("preflight's 6ξ", agree)
    negative = control(NEGATIVE_CONTROL, agrees("majority-class guess", majority))
    figures = save_figure(out_dir, "trainability", lambda ax: _plot(ax, cells, sigma_w2, depths))
    return ExperimentResult(
        name="trainability",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "activation": "tanh",
            "width": WIDTH,
            "sigma_b2": SIGMA_B2,
            "depths": list(depths),
            "sigma_w2": list(sigma_w2),
            "steps": steps,
            "optimizer": "SGD momentum 0.9, clip 10",
            "lr_sweep": list(LRS),
            "lr_chosen_by": "training accuracy",
            "trained_if_test_accuracy_at_least": TRAINS,
            "seed": seed,
        },
        measured={
            "agreement": sig(agree, 3),
            "majority_guess_agreement": sig(majority, 3),
            "disagreements": [
                f"depth {c['depth']}, σ_w² {c['sigma_w2']}: predicted "
                f"{'trainable' if c['predicted_trainable'] else 'untrainable'}, accuracy "
                f"{c['accuracy']:.2f} (lr {c['lr']:g})"
                for c in cells
                if c["predicted_trainable"] != c["trained"]
            ],
            "cells": [
                {**c, "accuracy": sig(c["accuracy"], 3), "six_xi": sig(c["six_xi"], 3)}
                for c in cells
            ],
            "critical_sigma_w2": sig(theory.critical_sigma_w2("tanh", SIGMA_B2), 4),
        },
        paper={"claim": "trainable iff depth ≲ 6ξ (Fig. 4)"},
        criterion=f"agreement ≥ {AGREEMENT:.0%} between depth ≤ 6ξ and test accuracy ≥ {TRAINS}",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        seed=seed,
        figures=figures,
        quick=quick,
    )


def _plot(
    ax: Any, cells: list[dict[str, Any]], sigma_w2: tuple[float, ...], depths: tuple[int, ...]
) -> None:
    for c in cells:
        ax.scatter(c["sigma_w2"], c["depth"], c=[[1 - c["accuracy"], c["accuracy"], 0.2]], s=60)
    grid = np.geomspace(min(sigma_w2), max(sigma_w2), 80)
    line = [6 * theory.depth_scale(theory.chi1("tanh", s, SIGMA_B2)) for s in grid]
    ax.plot(grid, np.minimum(line, 2 * max(depths)), "k-", label="6ξ (preflight)")
    ax.set_xscale("log")
    ax.set_xlabel("σ_w²  (tanh, σ_b² = 0.05)")
    ax.set_ylabel("depth")
    ax.set_ylim(0, 1.1 * max(depths))
    ax.set_title("trainability: green trained, red did not")
    ax.legend()
