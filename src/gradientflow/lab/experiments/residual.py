"""residual: plain nets get worse as they get deeper (degradation); residual nets do not.

Source: He et al. 2016, "Deep residual learning for image recognition", §4.1, Fig. 4 and
Table 2: with BN, 34-layer plain nets have *higher training error* than 18-layer ones, although
their "forward propagated signals have non-zero variances" and "backward propagated gradients
exhibit healthy norms" — degradation is not vanishing gradients. The residual versions improve
with depth (CIFAR-10 test error: ResNet-20 8.75%, -32 7.51%, -44 7.17%, -56 6.97%, -110 6.43%).

On MNIST-1D we train :class:`~gradientflow.lab.models.ResidualMLP` (Linear–BN–ReLU blocks, He
init) with and without shortcuts at growing depth, same SGD, same batches, and measure the
final training loss over the whole training set. Every run is watched: the plain deep net's
gradient ratio first/last layer (median over training) shows its gradients do not vanish.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gradientflow.diagnosis.depth import grad_ratio
from gradientflow.lab import datasets, models
from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check, sig
from gradientflow.lab.training import finding_kinds, fit

CLAIM = (
    "Deeper plain nets train worse (degradation) even with BN and healthy gradients; "
    "residual shortcuts remove the degradation."
)
SOURCE = "He et al. 2016, Deep Residual Learning (§4.1, Fig. 4, Table 2, CIFAR-10 Table 6)"
LR, WIDTH, BATCH = 0.1, 64, 128


def _train(blocks: int, residual: bool, epochs: int) -> dict[str, Any]:
    data = datasets.mnist1d()
    net = models.ResidualMLP(40, 10, width=WIDTH, blocks=blocks, residual=residual, seed=0)
    result = fit(
        net, data, epochs=epochs, lr=LR, momentum=0.9, batch_size=BATCH, seed=0, watch=True
    )
    ratios = grad_ratio(result.trace)  # first / last layer's gradient norm, per record
    return {
        "depth": net.depth,
        "train_loss": result.train_loss,
        "test_acc": result.test_acc,
        "ratio_step0": float(ratios[0]),
        "ratio_median": float(np.nanmedian(ratios)),
        "findings": finding_kinds(result.trace),
    }


def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
    """Final training loss of plain vs residual nets at 2 (quick) or 4 depths."""
    epochs = 5 if quick else 12
    blocks = [1, 12] if quick else [1, 4, 8, 12]
    plain = [_train(b, False, epochs) for b in blocks]
    res = [_train(b, True, epochs) for b in blocks]
    deep_ratio = plain[-1]["ratio_median"]
    checks: list[dict[str, Any]] = []
    check(
        checks,
        "plain: deepest net's training loss ≥ 1.2 × the shallowest's",
        plain[-1]["train_loss"] >= 1.2 * plain[0]["train_loss"],
    )
    check(
        checks,
        "residual: deepest net's training loss ≤ 1.05 × the shallowest's",
        res[-1]["train_loss"] <= 1.05 * res[0]["train_loss"],
    )
    check(
        checks,
        "deepest: residual training loss < plain",
        res[-1]["train_loss"] < plain[-1]["train_loss"],
    )
    check(
        checks,
        "plain deepest: gradient ratio first/last (median over training) in "
        "[0.1, 10] — not vanishing",
        0.1 <= deep_ratio <= 10,
    )
    check(
        checks,
        "diagnose(): no 'vanishing' finding for the plain deepest net",
        "vanishing" not in plain[-1]["findings"],
    )
    depths = [int(p["depth"]) for p in plain]
    figures = save_figure(out_dir, "residual", lambda ax: _plot(ax, depths, plain, res))
    return ExperimentResult(
        name="residual",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "data": "MNIST-1D",
            "blocks": blocks,
            "weight_layers": depths,
            "width": WIDTH,
            "epochs": epochs,
            "optimizer": f"SGD lr {LR} momentum 0.9, batch {BATCH}",
            "model": "ResidualMLP: Linear-BN-ReLU blocks, He init, zero-γ in residual blocks",
        },
        measured={
            "train_loss_plain": {
                str(d): sig(p["train_loss"]) for d, p in zip(depths, plain, strict=True)
            },
            "train_loss_residual": {
                str(d): sig(r["train_loss"]) for d, r in zip(depths, res, strict=True)
            },
            "test_acc_plain": {
                str(d): round(p["test_acc"], 3) for d, p in zip(depths, plain, strict=True)
            },
            "test_acc_residual": {
                str(d): round(r["test_acc"], 3) for d, r in zip(depths, res, strict=True)
            },
            "plain_deepest_grad_ratio_median": sig(deep_ratio, 2),
            "plain_deepest_grad_ratio_step0": sig(plain[-1]["ratio_step0"], 2),
            "plain_deepest_diagnose_findings": plain[-1]["findings"],
        },
        paper={
            "cifar10_resnet_test_error_pct": {
                "20": 8.75,
                "32": 7.51,
                "44": 7.17,
                "56": 6.97,
                "110": 6.43,
            }
        },
        criterion="plain: deepest loss ≥ 1.2× shallowest; residual: deepest ≤ 1.05× shallowest "
        "and < plain deepest; plain deepest gradient ratio in [0.1, 10] and not diagnosed "
        "'vanishing'",
        passed=all(c["passed"] for c in checks),
        checks=checks,
        figures=figures,
        quick=quick,
    )


def _plot(
    ax: Any, depths: list[int], plain: list[dict[str, Any]], res: list[dict[str, Any]]
) -> None:
    ax.plot(depths, [p["train_loss"] for p in plain], "o-", label="plain")
    ax.plot(depths, [r["train_loss"] for r in res], "s-", label="residual")
    ax.set_xlabel("weight layers")
    ax.set_ylabel("final training loss")
    ax.set_title("degradation: plain vs residual (MNIST-1D)")
    ax.legend()
