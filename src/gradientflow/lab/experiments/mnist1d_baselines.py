"""mnist1d-baselines: our MNIST-1D (generated offline) reproduces the paper's baselines.

Source: Greydanus 2020, "Scaling down deep learning" (MNIST-1D): 4000 train / 1000 test
signals of length 40, 10 classes; test accuracy logistic 32%, MLP 68%, CNN 94%, GRU 91%. Those
numbers make MNIST-1D a useful small benchmark: the architectures separate clearly, unlike on
MNIST. The lab's other MNIST-1D experiments (batchnorm, residual, glorot-init) rest on this data
being the paper's data.

Models as in the paper's code (as far as we know it): logistic regression; an MLP with two
hidden ReLU layers of 100; the CNN of :func:`gradientflow.lab.models.cnn1d` (3 conv layers of
25 channels, stride 2); a GRU (32 hidden here) reading one value per step. Adam lr 1e-2, batch
100, as in the paper; the paper trains 6000 steps, we train 3000 (600 in --quick).

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check
from gradientflow.lab.training import fit

CLAIM = (
    "MNIST-1D, generated offline by the lab, gives the paper's baseline accuracies: "
    "logistic ≈ 32%, MLP ≈ 68%, CNN ≈ 94%, GRU ≈ 91%."
)
SOURCE = "Greydanus 2020, Scaling down deep learning (MNIST-1D), baseline table"
PAPER = {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94, "gru": 0.91}
QUICK_FLOOR = {"logistic": 0.24, "mlp": 0.55, "cnn": 0.85, "gru": 0.6}
TOLERANCE = 0.08


class GRUClassifier(nn.Module):
    """A GRU over the signal, one value per step, classified from the last state.

    >>> GRUClassifier()(torch.zeros(2, 40)).shape
    torch.Size([2, 10])
    """

    def __init__(self, hidden: int = 32, n_out: int = 10, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x.unsqueeze(-1))
        return self.head(out[:, -1])


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "logistic":
        return nn.Linear(40, 10)
    if name == "mlp":
        return models.mlp(40, 10, width=100, depth=3, activation="relu", init="default")
    if name == "cnn":
        return models.cnn1d()
    return GRUClassifier()


def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
    """Train the four baselines with the paper's optimizer; compare test accuracy."""
    steps = 600 if quick else 3000
    data = datasets.mnist1d()
    epochs = steps * 100 // len(data.x_train) + 1
    acc: dict[str, float] = {}
    for name in PAPER:
        result = fit(
            _model(name),
            data,
            epochs=epochs,
            lr=1e-2,
            optimizer="adam",
            batch_size=100,
            seed=0,
            max_steps=steps,
        )
        acc[name] = result.test_acc
    checks: list[dict[str, Any]] = []
    check(checks, "ordering: logistic < MLP < CNN", acc["logistic"] < acc["mlp"] < acc["cnn"])
    for name, paper in PAPER.items():
        if quick:
            check(
                checks,
                f"{name}: test accuracy ≥ {QUICK_FLOOR[name]}",
                acc[name] >= QUICK_FLOOR[name],
            )
        else:
            check(
                checks,
                f"{name}: within {TOLERANCE:.0%} points of the paper's {paper:.0%}",
                abs(acc[name] - paper) <= TOLERANCE,
            )
    figures = save_figure(out_dir, "mnist1d-baselines", lambda ax: _plot(ax, acc))
    return ExperimentResult(
        name="mnist1d-baselines",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "data": "MNIST-1D via mnist1d.make_dataset (offline), 4000/1000",
            "optimizer": "Adam lr 1e-2, batch 100",
            "steps": steps,
            "models": "logistic; MLP 2×100 ReLU; CNN 3×25 ch; GRU 32 hidden",
        },
        measured={"test_acc": {k: round(v, 3) for k, v in acc.items()}},
        paper={"test_acc": PAPER, "steps": 6000},
        criterion="logistic < MLP < CNN and "
        + (
            "each above a floor (quick budget)"
            if quick
            else f"each within {TOLERANCE:.0%} points of the paper"
        ),
        passed=all(c["passed"] for c in checks),
        checks=checks,
        figures=figures,
        quick=quick,
    )


def _plot(ax: Any, acc: dict[str, float]) -> None:
    names = list(PAPER)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [PAPER[n] for n in names], width=0.4, label="paper")
    ax.bar([x + 0.2 for x in xs], [acc[n] for n in names], width=0.4, label="ours")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("test accuracy")
    ax.set_title("MNIST-1D baselines")
    ax.legend()
