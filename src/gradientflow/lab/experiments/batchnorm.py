"""batchnorm: batch normalization keeps sigmoid inputs stable, trains faster, and keeps
gradients flowing through depth.

Source: Ioffe & Szegedy 2015, "Batch normalization", §4.1 and Fig. 1: MNIST, 3 hidden layers
of 100 sigmoid units; with BN the net trains faster and the distribution of a sigmoid's input
stays stable over training, while without BN its mean and spread drift. SCIENCE.md measured on
the 20-layer sigmoid digits MLP: first/last gradient ratio 1e-18 without BN, 0.68 with BN.

Part 1 (Ioffe's Fig. 1 on MNIST-1D): the 3×100 sigmoid MLP with PyTorch's default init, plain
vs with BN (made by :func:`gradientflow.remedies.batchnorm.add_batchnorm`), same SGD, same
batches. We track each unit of the last hidden layer's sigmoid input every 25 steps and report
its *shift*: (max - min over training of the unit's mean) / (its average spread).
Part 2: the 20-layer sigmoid MLP on digits, gradient ratio first/last layer at step 0, read
from :func:`gradientflow.watch`'s Trace.

>>> r = run(quick=True)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradientflow.lab import datasets, models
from gradientflow.lab.figures import save_figure
from gradientflow.lab.record import ExperimentResult, check, sig
from gradientflow.lab.training import fit, step0_ratio

CLAIM = (
    "Batch normalization keeps each sigmoid's input distribution fixed during training, so "
    "the net trains faster, and keeps the gradient's scale through many layers."
)
SOURCE = "Ioffe & Szegedy 2015, Batch Normalization (§4.1, Fig. 1: 3×100 sigmoid MLP on MNIST)"
EVERY = 25


def _with_bn(model: nn.Sequential) -> nn.Sequential:
    from gradientflow.remedies.batchnorm import add_batchnorm

    new = add_batchnorm(model)
    assert isinstance(new, nn.Sequential)
    return new


def _train_tracking(
    net: nn.Sequential, data: datasets.Dataset, epochs: int, lr: float
) -> dict[str, Any]:
    """Train; every EVERY steps record the last sigmoid's input and the test accuracy."""
    where = [i for i, m in enumerate(net) if isinstance(m, nn.Sigmoid)][-1]
    probe_x = data.x_train[:500]
    means: list[torch.Tensor] = []
    spreads: list[torch.Tensor] = []
    accs: list[float] = []

    def on_step(step: int, model: nn.Module) -> None:
        if step % EVERY:
            return
        with torch.no_grad():  # a copy, so that BN's running statistics are left alone
            pre = copy.deepcopy(net)[:where](probe_x)
        means.append(pre.mean(0))
        spreads.append(pre.std(0))
        accs.append(datasets.accuracy(model, data.x_test, data.y_test))

    result = fit(
        net, data, epochs=epochs, lr=lr, momentum=0.9, batch_size=64, seed=0, on_step=on_step
    )
    mu, sd = torch.stack(means), torch.stack(spreads)
    shift = float(((mu.max(0).values - mu.min(0).values) / sd.mean(0)).mean())
    return {
        "test_acc": result.test_acc,
        "train_loss": result.train_loss,
        "shift": shift,
        "acc_curve": accs,
        "unit0_mean": mu[:, 0].tolist(),
    }


def _deep_ratio(batchnorm: bool) -> float:
    """First/last gradient ratio at step 0 of the 20-layer sigmoid MLP on digits (watched)."""
    data = datasets.digits()
    net = models.mlp(64, 10, width=64, depth=20, activation="sigmoid", seed=0)
    if batchnorm:
        net = _with_bn(net)
    return step0_ratio(fit(net, data, epochs=1, lr=0.05, max_steps=1, watch=True).trace)


def run(quick: bool = False, out_dir: Path | None = None) -> ExperimentResult:
    """Plain vs BN: input shift, test accuracy at equal steps, deep gradient ratio."""
    epochs = 6 if quick else 20
    lr = 0.1
    data = datasets.mnist1d()
    base = models.mlp(40, 10, width=100, depth=4, activation="sigmoid", seed=0)
    plain = _train_tracking(copy.deepcopy(base), data, epochs, lr)
    bn = _train_tracking(_with_bn(base), data, epochs, lr)
    ratio_plain, ratio_bn = _deep_ratio(False), _deep_ratio(True)
    checks: list[dict[str, Any]] = []
    check(checks, "sigmoid-input shift with BN < 1/5 of without", bn["shift"] < plain["shift"] / 5)
    check(
        checks,
        "test accuracy at equal steps: BN ≥ plain + 0.05",
        bn["test_acc"] >= plain["test_acc"] + 0.05,
    )
    check(
        checks,
        "20-layer sigmoid: gradient ratio < 1e-6 without BN, ≥ 0.1 with BN",
        ratio_plain < 1e-6 and ratio_bn >= 0.1,
    )
    figures = save_figure(out_dir, "batchnorm", lambda ax: _plot(ax, plain, bn))
    return ExperimentResult(
        name="batchnorm",
        claim=CLAIM,
        source=SOURCE,
        setup={
            "part1": f"MNIST-1D, 3×100 sigmoid MLP, default init, SGD lr {lr} momentum 0.9, "
            f"batch 64, {epochs} epochs; BN via remedies.add_batchnorm",
            "part2": "digits, 20-layer width-64 sigmoid MLP, gradient ratio at step 0",
        },
        measured={
            "test_acc_plain": round(plain["test_acc"], 3),
            "test_acc_bn": round(bn["test_acc"], 3),
            "input_shift_plain": sig(plain["shift"]),
            "input_shift_bn": sig(bn["shift"]),
            "train_loss_plain": sig(plain["train_loss"]),
            "train_loss_bn": sig(bn["train_loss"]),
            "deep_grad_ratio_plain": sig(ratio_plain, 2),
            "deep_grad_ratio_bn": sig(ratio_bn, 2),
        },
        paper={
            "imagenet_sigmoid_inception": "with BN 69.8% top-1; without: never > 1/1000",
            "science_md_20_layer_digits": {
                "ratio_plain": 1e-18,
                "ratio_bn": 0.68,
                "test_acc_plain": 0.10,
                "test_acc_bn": 0.92,
            },
        },
        criterion="with BN: sigmoid-input shift < 1/5 of plain; test accuracy ≥ plain + 0.05 "
        "at equal steps; 20-layer gradient ratio ≥ 0.1 (plain < 1e-6)",
        passed=all(c["passed"] for c in checks),
        checks=checks,
        figures=figures,
        quick=quick,
    )


def _plot(ax: Any, plain: dict[str, Any], bn: dict[str, Any]) -> None:
    steps = [EVERY * i for i in range(len(plain["acc_curve"]))]
    ax.plot(steps, plain["acc_curve"], label="sigmoid MLP")
    ax.plot(steps, bn["acc_curve"], label="sigmoid MLP + BN")
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy (MNIST-1D)")
    ax.set_title("batch normalization, 3×100 sigmoid (Ioffe Fig. 1a)")
    ax.legend()
