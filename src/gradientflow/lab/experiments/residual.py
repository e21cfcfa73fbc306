"""residual: plain nets get worse as they get deeper (degradation); residual nets do not.

Source: He et al. 2016, "Deep residual learning for image recognition", §4.1, Fig. 4 and
Table 2: with BN, 34-layer plain nets have *higher training error* than 18-layer ones, although
their "forward propagated signals have non-zero variances" and "backward propagated gradients
exhibit healthy norms" — degradation is not vanishing gradients. The residual versions improve
with depth (CIFAR-10 test error: ResNet-20 8.75%, -32 7.51%, -44 7.17%, -56 6.97%, -110 6.43%).

On MNIST-1D we train :class:`~gradientflow.lab.models.ResidualMLP` (Linear–BN–ReLU blocks, He
init) with and without shortcuts at growing depth, each net at its own best lr of the same
sweep, same SGD, same batches, and measure the final training loss over the whole training set.
The plain deepest net is watched: at step 0 its first layer's gradient is *larger* than its last
layer's (not vanishing; diagnose() calls it 'exploding': deep BN nets' gradients grow toward
the input at init, Yang et al. 2019), so "healthy" here means only "not vanishing". The
negative control: the plain nets must fail the residual criterion.

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
from gradientflow.lab.record import ExperimentResult, check, control, sig, verdict
from gradientflow.lab.training import LR_SWEEP, best_lr, finding_kinds, fit

CLAIM = (
    "Deeper plain nets train worse (degradation) even with BN and healthy gradients; "
    "residual shortcuts remove the degradation."
)
SOURCE = "He et al. 2016, Deep Residual Learning (§4.1, Fig. 4, Table 2, CIFAR-10 Table 6)"
WIDTH, BATCH = 64, 128
NEGATIVE_CONTROL = "the plain nets under the residual criterion (deepest ≤ 1.05 × shallowest)"


def _train(blocks: int, residual: bool, epochs: int, seed: int, watch: bool) -> dict[str, Any]:
    """The net at its best lr of the sweep (by final training loss); the best run re-run watched
    when ``watch`` (for its step-0 gradient ratio and diagnose()'s findings)."""
    data = datasets.mnist1d()

    def make() -> models.ResidualMLP:
        return models.ResidualMLP(40, 10, width=WIDTH, blocks=blocks, residual=residual, seed=seed)

    kw: dict[str, Any] = {"epochs": epochs, "momentum": 0.9, "batch_size": BATCH, "seed": seed}
    lr, _, result = best_lr(make, data, LR_SWEEP, drop_last=True, **kw)
    out: dict[str, Any] = {
        "depth": make().depth,
        "lr": lr,
        "train_loss": result.train_loss,
        "test_acc": result.test_acc,
    }
    if watch:
        trace = fit(make(), data, lr=lr, drop_last=True, watch=True, **kw).trace
        ratios = grad_ratio(trace)  # first / last layer's gradient norm, per record
        out |= {
            "ratio_step0": float(ratios[0]),
            "ratio_median": float(np.nanmedian(ratios)),
            "findings": finding_kinds(trace),
            "severity": _severities(trace),
        }
    return out


def _severities(trace: Any) -> dict[str, str]:
    from gradientflow.diagnosis import diagnose

    return {f.kind: str(getattr(f, "severity", "")) for f in diagnose(trace).findings}


def degradation_gone(losses: list[float]) -> list[dict[str, Any]]:
    """The residual criterion on a series of final training losses, shallow to deep."""
    checks: list[dict[str, Any]] = []
    check(
        checks,
        "deepest net's training loss ≤ 1.05 × the shallowest's",
        losses[-1] <= 1.05 * losses[0],
    )
    return checks


def run(quick: bool = False, out_dir: Path | None = None, seed: int = 0) -> ExperimentResult:
    """Final training loss of plain vs residual nets at 2 (quick) or 4 depths."""
    epochs = 5 if quick else 12
    blocks = [1, 12] if quick else [1, 4, 8, 12]
    plain = [_train(b, False, epochs, seed, watch=b == blocks[-1]) for b in blocks]
    res = [_train(b, True, epochs, seed, watch=False) for b in blocks]
    deep = plain[-1]
    checks: list[dict[str, Any]] = []
    check(
        checks,
        "plain: deepest net's training loss ≥ 1.2 × the shallowest's",
        plain[-1]["train_loss"] >= 1.2 * plain[0]["train_loss"],
    )
    checks += [
        {**c, "check": "residual: " + c["check"]}
        for c in degradation_gone([r["train_loss"] for r in res])
    ]
    check(
        checks,
        "deepest: residual training loss < plain",
        res[-1]["train_loss"] < plain[-1]["train_loss"],
    )
    check(
        checks,
        "plain deepest: gradient ratio first/last at step 0 ≥ 0.1 — not vanishing",
        deep["ratio_step0"] >= 0.1,
    )
    check(
        checks,
        "diagnose(): no 'vanishing' finding for the plain deepest net",
        "vanishing" not in deep["findings"],
    )
    negative = control(NEGATIVE_CONTROL, degradation_gone([p["train_loss"] for p in plain]))
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
            "seed": seed,
            "optimizer": f"SGD momentum 0.9, batch {BATCH}, short last batch dropped",
            "lr_sweep": list(LR_SWEEP),
            "lr_selection": "lowest final training loss, per net",
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
            "best_lr_plain": {str(d): p["lr"] for d, p in zip(depths, plain, strict=True)},
            "best_lr_residual": {str(d): r["lr"] for d, r in zip(depths, res, strict=True)},
            "plain_deepest_grad_ratio_step0": sig(deep["ratio_step0"], 2),
            "plain_deepest_grad_ratio_median": sig(deep["ratio_median"], 2),
            "plain_deepest_diagnose_findings": deep["findings"],
            "plain_deepest_diagnose_severity": deep["severity"],
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
        criterion="each net at its best lr: plain deepest loss ≥ 1.2× shallowest; residual "
        "deepest ≤ 1.05× shallowest and < plain deepest; plain deepest: step-0 gradient ratio "
        "≥ 0.1 and not diagnosed 'vanishing'",
        passed=verdict(checks, negative),
        checks=checks,
        negative_control=negative,
        seed=seed,
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
